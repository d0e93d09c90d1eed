package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// BufferedBody is the largest response body (with a known length) that
// Stream reads into the response; larger or unbounded bodies stay on the
// connection and are read through Response.BodyStream. Small bodies are the
// common case, and reading them whole frees the connection at once and costs
// no allocation.
const BufferedBody = 64 << 10

// errStale is a reused keep-alive connection that the upstream had closed:
// it read nothing of the request, so an idempotent one may be sent again.
var errStale = errors.New("upstream closed an idle connection")

// connOps releases or closes a HostClient connection, whose type fasthttp
// does not export: the method expressions fix the type parameter, so a
// connection can be held as `any` and handed back without allocating.
var connOps = newConnOps((*fasthttp.HostClient).ReleaseConn, (*fasthttp.HostClient).CloseConn)

type connFuncs[C any] struct {
	release, close func(*fasthttp.HostClient, C)
}

func newConnOps[C any](release, close func(*fasthttp.HostClient, C)) connFuncs[C] {
	return connFuncs[C]{release: release, close: close}
}

func (o connFuncs[C]) put(hc *fasthttp.HostClient, cc any, reuse bool) {
	c := cc.(C)
	if reuse {
		o.release(hc, c)
	} else {
		o.close(hc, c)
	}
}

// Lease is an upstream connection held by a streamed response body. The
// caller reads resp.BodyStream, then calls Release exactly once.
type Lease struct {
	t     *Target
	hc    *fasthttp.HostClient
	cc    any
	conn  net.Conn
	br    *bufio.Reader
	reuse bool
	long  bool
}

var leasePool = sync.Pool{New: func() any { return new(Lease) }}

// Target is the target serving the response.
func (l *Lease) Target() *Target { return l.t }

// Interrupt closes the connection, waking a body read blocked on it. The
// Lease must still be released.
func (l *Lease) Interrupt() { _ = l.conn.Close() }

// DetachReader hands the body over to a caller that reads it raw (with its
// transfer coding) from Conn: it appends the body bytes the connection's
// reader already holds to dst and returns that reader to the pool, so a
// long-lived stream holds no read buffer here while it waits. Call it at
// most once, instead of reading resp.BodyStream.
func (l *Lease) DetachReader(dst []byte) []byte {
	if l.br == nil {
		return dst
	}
	if n := l.br.Buffered(); n > 0 {
		b, _ := l.br.Peek(n)
		dst = append(dst, b...)
	}
	releaseReader(l.br)
	l.br = nil
	return dst
}

// Conn is the connection the response body arrives on.
func (l *Lease) Conn() net.Conn { return l.conn }

// LongLived lifts the per-read silence bound of the ordinary pool for this
// response: an event stream may stay quiet for as long as it lives. Call it
// before reading the body.
func (l *Lease) LongLived() {
	if dc, ok := l.conn.(*deadlineConn); ok && dc.idle > 0 {
		dc.idle = 0
		_ = dc.setRead(time.Time{})
	}
}

// Release ends the response: with complete (the body was read to its end)
// the connection goes back to the pool, otherwise it is closed.
func (l *Lease) Release(complete bool) {
	if complete && l.reuse {
		if dc, ok := l.conn.(*deadlineConn); ok {
			dc.idle = dc.baseIdle
		}
		if l.br != nil {
			releaseReader(l.br)
		}
		connOps.put(l.hc, l.cc, true)
	} else {
		// The reader is dropped, not pooled: a read may still be running
		// on it in another goroutine until the close wakes it.
		_ = l.conn.Close()
		connOps.put(l.hc, l.cc, false)
	}
	l.t.done(l.long)
	*l = Lease{}
	leasePool.Put(l)
}

// Stream sends req to one of u's targets (the stream pool when long) and
// reads the response headers into resp. A small body of known length is
// read too and the Lease is nil; otherwise the body is left on the
// connection, readable through resp.BodyStream, and the Lease must be
// released when done. Retries follow the same rules as Do.
//
// hdr, when not nil, receives the response header instead of resp.Header
// (which then gets only the status and framing that reading the body
// needs): a caller relaying the response reads it straight into its own
// response's header instead of copying it there.
//
// fields, when not empty, are header field lines (each ending in CRLF)
// written at the end of req's header block, as they are: a caller adding
// fields rendered once saves a Set per field (a scan of the header's fields
// and a copy of the value). They must be well-formed (no CR or LF inside a
// value); req must then have its body in memory (no body stream), a Host
// field and no announced trailer.
func (u *Upstream) Stream(req *fasthttp.Request, fields []byte, hdr *fasthttp.ResponseHeader, resp *fasthttp.Response, long bool) (*Lease, error) {
	if len(fields) > 0 && (req.IsBodyStream() || len(req.Header.Host()) == 0) {
		return nil, errFieldsUnsupported
	}
	attempts := 1
	if isIdempotent(req) {
		attempts += u.cfg.Retries
	}
	var tried uint64
	var lastErr error
	for a := 0; a < attempts; a++ {
		i, t := u.pick(tried)
		if t == nil {
			if lastErr != nil {
				return nil, lastErr
			}
			return nil, ErrNoHealthyTarget
		}
		tried |= 1 << (uint(i) & 63)
		l, err := t.streamOn(req, fields, hdr, resp, long)
		if err == nil {
			return l, nil
		}
		lastErr = err
		if !nothingSent(err) {
			break
		}
	}
	return nil, lastErr
}

// done ends the accounting of one response.
func (t *Target) done(long bool) {
	if long {
		t.streams.Add(-1)
	} else {
		t.inFlight.Add(-1)
	}
}

func (t *Target) streamOn(req *fasthttp.Request, fields []byte, hdr *fasthttp.ResponseHeader, resp *fasthttp.Response, long bool) (*Lease, error) {
	hc, n, waits := t.hc, &t.inFlight, t.waits
	if long {
		hc, n, waits = t.stream, &t.streams, t.streamWaits
	}
	if n.Add(1) > int64(hc.MaxConns) {
		waits.Inc()
	}
	replayable := isIdempotent(req) && !req.IsBodyStream()
	var l *Lease
	var err error
	for try := 0; try < 3; try++ {
		l, err = t.exchange(hc, req, fields, hdr, resp, long)
		if err != errStale || !replayable {
			break
		}
		resp.Reset()
	}
	if err != nil {
		t.done(long)
		if err == errStale {
			err = fasthttp.ErrConnectionClosed
		}
		t.failed(err)
		return nil, err
	}
	if t.fails.Load() != 0 {
		t.fails.Store(0) // a store on every success would bounce the line between cores
	}
	if l == nil {
		t.done(long)
	}
	return l, nil
}

// exchange runs one request on one connection of hc.
func (t *Target) exchange(hc *fasthttp.HostClient, req *fasthttp.Request, fields []byte, hdr *fasthttp.ResponseHeader, resp *fasthttp.Response, long bool) (*Lease, error) {
	cc, err := hc.AcquireConn(0, req.ConnectionClose())
	if err != nil {
		return nil, err
	}
	reused := cc.LastUseTime().After(cc.CreatedTime())
	conn := cc.Conn()
	bw := hc.AcquireWriter(conn)
	if len(fields) > 0 {
		err = WriteWithFields(bw, req, fields)
	} else {
		err = req.Write(bw)
	}
	if err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if err != nil {
		hc.CloseConn(cc)
		if reused && isClosed(err) {
			return nil, errStale
		}
		return nil, err
	}

	h := &resp.Header
	if hdr != nil {
		h = hdr
	}
	br := acquireReader(conn)
	for {
		if br, err = readHeader(br, conn, h, !long); err != nil {
			releaseReader(br)
			hc.CloseConn(cc)
			if reused && isClosed(err) {
				return nil, errStale
			}
			return nil, err
		}
		if c := h.StatusCode(); c >= 200 || c == fasthttp.StatusSwitchingProtocols {
			break
		}
		// 1xx informational responses are not relayed.
	}
	status, cl := h.StatusCode(), h.ContentLength()
	closeConn := req.ConnectionClose() || h.ConnectionClose()
	if req.Header.IsHead() || status == fasthttp.StatusNoContent || status == fasthttp.StatusNotModified ||
		status == fasthttp.StatusSwitchingProtocols {
		resp.SkipBody = true
		releaseReader(br)
		if closeConn || status == fasthttp.StatusSwitchingProtocols {
			hc.CloseConn(cc)
		} else {
			hc.ReleaseConn(cc)
		}
		return nil, nil
	}
	if cl >= 0 && cl <= BufferedBody {
		resp.StreamBody = false
		if hdr != nil {
			err = readFixedBody(br, resp, cl)
		} else {
			err = resp.ReadBody(br, 0)
		}
		releaseReader(br)
		if err != nil {
			hc.CloseConn(cc)
			return nil, err
		}
		if closeConn {
			hc.CloseConn(cc)
		} else {
			hc.ReleaseConn(cc)
		}
		return nil, nil
	}
	if hdr != nil {
		// The body stream reads its framing from resp's own header.
		resp.Header.SetStatusCode(status)
		resp.Header.SetContentLength(cl)
	}
	resp.StreamBody = true
	_ = resp.ReadBody(br, 0) // attaches the body stream; reads nothing yet
	l := leasePool.Get().(*Lease)
	*l = Lease{t: t, hc: hc, cc: cc, conn: conn, br: br, reuse: !closeConn && cl != -2, long: long}
	return l, nil
}

// readFixedBody reads an n-byte body from br into resp, as resp.ReadBody
// would with a Content-Length of n in resp's own header (which a caller
// passing Stream a header of its own leaves untouched). Like ReadBody it
// reads into the body buffer itself, so that a body larger than br's buffer
// comes in reads as large as the body, not the buffer.
func readFixedBody(br *bufio.Reader, resp *fasthttp.Response, n int) error {
	b := slices.Grow(resp.SwapBody(nil)[:0], n)[:n]
	if _, err := io.ReadFull(br, b); err != nil {
		resp.SwapBody(b[:0])
		return err
	}
	resp.SwapBody(b)
	return nil
}

// errFieldsUnsupported is a request Stream cannot add fields to.
var errFieldsUnsupported = errors.New("upstream: added fields need a request with a Host field and its body in memory")

// WriteWithFields writes req as Request.Write does for a request with its
// body in memory and a Host field, with fields at the end of the header
// block: what Stream sends for a request with fields.
func WriteWithFields(w *bufio.Writer, req *fasthttp.Request, fields []byte) error {
	h := &req.Header
	body := req.Body()
	if len(body) > 0 || !(h.IsGet() || h.IsHead()) {
		h.SetContentLength(len(body))
	}
	block := h.Header() // ends with the empty line
	_, _ = w.Write(block[:len(block)-2])
	_, _ = w.Write(fields)
	_, _ = w.Write(crlf)
	_, err := w.Write(body)
	return err
}

var crlf = []byte("\r\n")

// Connection readers for Stream. They are the package's own rather than
// the HostClient's: Stream reads with a small buffer first (less of a body
// lands in it to be copied out again), while the HostClient's buffer is the
// whole header bound for Do (callouts, health checks). A reader grown for a
// large header block goes to its own pool.
var smallReaders, bigReaders sync.Pool

func acquireReader(conn net.Conn) *bufio.Reader {
	if br, _ := smallReaders.Get().(*bufio.Reader); br != nil {
		br.Reset(conn)
		return br
	}
	return bufio.NewReaderSize(conn, firstReadBuffer)
}

func releaseReader(br *bufio.Reader) {
	br.Reset(nil)
	if br.Size() == firstReadBuffer {
		smallReaders.Put(br)
	} else {
		bigReaders.Put(br)
	}
}

// readHeader reads a response header block from br. On the ordinary pool
// (grow) a block larger than br's buffer is read again through a reader of
// upstreamHeaderBytes that first returns what br holds; br is released and
// the larger reader is returned in its place.
func readHeader(br *bufio.Reader, conn net.Conn, h *fasthttp.ResponseHeader, grow bool) (*bufio.Reader, error) {
	err := h.Read(br)
	if err == nil || !grow || br.Size() >= upstreamHeaderBytes || !isSmallBuffer(err) {
		return br, err
	}
	held, _ := br.Peek(br.Buffered())
	var r io.Reader = conn
	if len(held) > 0 {
		r = io.MultiReader(bytes.NewReader(bytes.Clone(held)), conn)
	}
	releaseReader(br)
	big, _ := bigReaders.Get().(*bufio.Reader)
	if big == nil {
		big = bufio.NewReaderSize(r, upstreamHeaderBytes)
	} else {
		big.Reset(r)
	}
	return big, h.Read(big)
}

// isSmallBuffer reports a header block larger than the reader's buffer. It
// is a function of its own so that the errors.As target escapes only when
// a read failed, not on every successful header read.
func isSmallBuffer(err error) bool {
	var small *fasthttp.ErrSmallBuffer
	return errors.As(err, &small)
}

// isClosed reports an error meaning the peer closed the connection before
// answering.
func isClosed(err error) bool {
	var nr fasthttp.ErrNothingRead
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &nr) ||
		errors.Is(err, fasthttp.ErrConnectionClosed) || kindOf(err) == kindReset
}
