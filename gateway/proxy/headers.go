package proxy

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"net"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

// Hop-by-hop fields (RFC 9110 §7.6.1, plus the Proxy-* fields that
// httputil.ReverseProxy also treats as per-connection). Upgrade is among
// them: the gateway does not tunnel WebSockets or other upgraded protocols
// yet, so an upgrade request reaches the upstream as a plain request.
// Trailer is dropped because fasthttp does not relay trailer fields through
// a streamed body; announcing fields that never come would be wrong.
var hopByHop = [][]byte{
	[]byte("Connection"),
	[]byte("Proxy-Connection"),
	[]byte("Keep-Alive"),
	[]byte("Proxy-Authenticate"),
	[]byte("Proxy-Authorization"),
	[]byte("Te"),
	[]byte("Trailer"),
	[]byte("Transfer-Encoding"),
	[]byte("Upgrade"),
}

var (
	hdrConnection     = []byte("Connection")
	hdrXForwardedFor  = []byte("X-Forwarded-For")
	hdrXForwardedHost = []byte("X-Forwarded-Host")
	hdrXForwardedProt = []byte("X-Forwarded-Proto")
	hdrVia            = []byte("Via")
	hdrXRequestID     = []byte("X-Request-Id")
	hdrLastEventID    = []byte("Last-Event-ID")
	hdrAccept         = []byte("Accept")
	hdrExpect         = []byte("Expect")
	viaValue          = []byte("1.1 wasmgate")
	strHTTP           = []byte("http")
	strHTTPS          = []byte("https")
	strEventStream    = []byte("text/event-stream")
	commaSpace        = []byte(", ")
)

// header is the part of fasthttp's request and response headers the
// stripping code needs.
type header interface {
	Peek(key string) []byte
	PeekBytes(key []byte) []byte
	DelBytes(key []byte)
}

// stripHopByHop removes the fixed hop-by-hop fields and every field named in
// Connection. scratch holds the Connection value while fields are deleted.
func stripHopByHop(h header, scratch []byte) []byte {
	if conn := h.PeekBytes(hdrConnection); len(conn) > 0 {
		scratch = append(scratch[:0], conn...)
		for field := range bytes.SplitSeq(scratch, []byte{','}) {
			field = bytes.TrimSpace(field)
			if len(field) > 0 {
				h.DelBytes(field)
			}
		}
	}
	for _, k := range hopByHop {
		h.DelBytes(k)
	}
	return scratch
}

// requestIDs makes X-Request-Id values: a random per-process prefix and a
// counter, so ids are unique without a syscall per request.
type requestIDs struct {
	prefix [16]byte
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var r requestIDs
	var b [8]byte
	_, _ = rand.Read(b[:])
	hex.Encode(r.prefix[:], b[:])
	return &r
}

// appendNext appends a new 32-hex-digit id.
func (r *requestIDs) appendNext(dst []byte) []byte {
	dst = append(dst, r.prefix[:]...)
	v := r.n.Add(1)
	var b [8]byte
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
	return hex.AppendEncode(dst, b[:])
}

// appendClientIP appends the client's IP address without allocating.
func appendClientIP(dst []byte, addr net.Addr) []byte {
	if ta, ok := addr.(*net.TCPAddr); ok {
		if ap := ta.AddrPort(); ap.IsValid() {
			return ap.Addr().Unmap().AppendTo(dst)
		}
	}
	if addr == nil {
		return dst
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return dst
	}
	return append(dst, host...)
}

// prepareRequest rewrites out (a copy of the client's request headers) into
// what the upstream receives. It returns the request id.
func (x *exchange) prepareRequest(ctx *fasthttp.RequestCtx, out *fasthttp.RequestHeader) {
	x.scratch = stripHopByHop(out, x.scratch)
	out.ResetConnectionClose()
	// The gateway answered any 100-continue itself; the body is on its way.
	out.DelBytes(hdrExpect)

	b := x.scratch[:0]
	if prior := out.PeekBytes(hdrXForwardedFor); len(prior) > 0 {
		b = append(append(b, prior...), commaSpace...)
	}
	b = appendClientIP(b, ctx.RemoteAddr())
	out.SetBytesKV(hdrXForwardedFor, b)

	if ctx.IsTLS() {
		out.SetBytesKV(hdrXForwardedProt, strHTTPS)
	} else {
		out.SetBytesKV(hdrXForwardedProt, strHTTP)
	}
	out.SetBytesKV(hdrXForwardedHost, ctx.Host())

	b = b[:0]
	if prior := out.PeekBytes(hdrVia); len(prior) > 0 {
		b = append(append(b, prior...), commaSpace...)
	}
	b = append(b, viaValue...)
	out.SetBytesKV(hdrVia, b)

	x.reqID = x.reqID[:0]
	if id := out.PeekBytes(hdrXRequestID); len(id) > 0 && len(id) <= 128 {
		x.reqID = append(x.reqID, id...)
	} else {
		x.reqID = x.p.ids.appendNext(x.reqID)
		out.SetBytesKV(hdrXRequestID, x.reqID)
	}
	x.scratch = b
}

// prepareResponse strips hop-by-hop fields from the upstream response
// headers already copied into h and adds Via and X-Request-Id.
func (x *exchange) prepareResponse(h *fasthttp.ResponseHeader) {
	x.scratch = stripHopByHop(h, x.scratch)
	h.ResetConnectionClose()
	b := x.scratch[:0]
	if prior := h.PeekBytes(hdrVia); len(prior) > 0 {
		b = append(append(b, prior...), commaSpace...)
	}
	b = append(b, viaValue...)
	h.SetBytesKV(hdrVia, b)
	if len(h.PeekBytes(hdrXRequestID)) == 0 {
		h.SetBytesKV(hdrXRequestID, x.reqID)
	}
	x.scratch = b
}
