package proxy

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"net"
	"strconv"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

var (
	hdrXForwardedFor  = []byte("X-Forwarded-For")
	hdrXForwardedHost = []byte("X-Forwarded-Host")
	hdrXForwardedProt = []byte("X-Forwarded-Proto")
	hdrVia            = []byte("Via")
	hdrXRequestID     = []byte("X-Request-Id")
	hdrLastEventID    = []byte("Last-Event-Id") // canonical: found with PeekCanonical
	hdrAccept         = []byte("Accept")
	viaValue          = []byte("1.1 wasmgate")
	strHTTP           = []byte("http")
	strHTTP11         = []byte("HTTP/1.1")
	strSchemeEnd      = []byte("://")
	strHTTPS          = []byte("https")
	strEventStream    = []byte("text/event-stream")
	commaSpace        = []byte(", ")
)

// header is the part of fasthttp's request and response headers the
// rewrite needs.
type header interface {
	PeekAll(key string) [][]byte
	DelBytes(key []byte)
}

// appendPrior appends the values of key in h, each followed by ", ",
// ready for the gateway's own entry, which goes after every prior one (as
// httputil.ReverseProxy puts it). It returns how many lines it found.
func appendPrior(dst []byte, h header, key string) ([]byte, int) {
	lines := h.PeekAll(key)
	for _, v := range lines {
		dst = append(append(dst, v...), commaSpace...)
	}
	return dst, len(lines)
}

// Reasons checkTarget gives.
const (
	reasonTarget  = "request target must be a path, an http or https URI, or * for OPTIONS"
	reasonConnect = "CONNECT is not supported"
	reasonHost    = "Host must be a host name or address and an optional port"
	reasonNoHost  = "Host is required"
)

// checkTarget says why a request whose target is not origin-form (does not
// start with '/'), or whose method is CONNECT, is refused, or "" to
// forward it. fasthttp's request-line parser refuses most other targets
// itself (serverError gives them the same reason); this check does not
// rely on it: asterisk-form is for OPTIONS only (RFC 9112 §3.2.4).
func checkTarget(h *fasthttp.RequestHeader) string {
	if h.IsConnect() {
		return reasonConnect
	}
	uri := h.RequestURI()
	if len(uri) == 1 && uri[0] == '*' {
		if h.IsOptions() {
			return ""
		}
		return reasonTarget
	}
	if _, _, ok := absoluteTarget(uri); !ok {
		return reasonTarget
	}
	return ""
}

// absoluteTarget splits an absolute-form request target (RFC 9112 §3.2.2)
// into its authority and what follows it (the origin-form target, maybe
// without its leading '/'). ok is false unless the scheme is http or https
// and the authority is a host, without userinfo (RFC 9110 §4.2.1, §4.2.4)
// or a fragment (RFC 9112 §3.2.2: an absolute-URI has none).
func absoluteTarget(uri []byte) (authority, rest []byte, ok bool) {
	i := bytes.Index(uri, strSchemeEnd)
	if i < 0 || !(equalFoldASCII(uri[:i], "http") || equalFoldASCII(uri[:i], "https")) {
		return nil, nil, false
	}
	authority = uri[i+len(strSchemeEnd):]
	if j := bytes.IndexAny(authority, "/?"); j >= 0 {
		authority, rest = authority[:j], authority[j:]
	}
	if len(authority) == 0 || bytes.ContainsAny(authority, "@#") {
		return nil, nil, false
	}
	return authority, rest, true
}

// toOriginForm rewrites an absolute-form target in h to origin-form, its
// authority the Host field (RFC 9112 §3.2.2: the target's authority
// replaces any Host the client sent). buf is scratch space.
func toOriginForm(h *fasthttp.RequestHeader, buf []byte) []byte {
	authority, rest, ok := absoluteTarget(h.RequestURI())
	if !ok {
		return buf // `*`
	}
	h.SetHostBytes(authority)
	buf = buf[:0]
	if len(rest) == 0 || rest[0] != '/' {
		buf = append(buf, '/')
	}
	buf = append(buf, rest...)
	h.SetRequestURIBytes(buf)
	return buf
}

// Fields found by a scan of a header block (see scanRequest).
const (
	seenHop       = 1 << iota // a hop-by-hop field or Expect (see dropSet)
	seenForwarded             // X-Forwarded-For
	seenVia                   // Via
	seenRequestID             // X-Request-Id
	seenLength                // Content-Length (for badFraming)
	seenTE                    // Transfer-Encoding (for badFraming)
	seenBadTE                 // a Transfer-Encoding other than chunked (scanRequest only)
	seenBareLF                // a line ended by LF alone (scanRequest only)
	seenFwdHost               // X-Forwarded-Host or -Proto: the gateway's to state
)

// classify says which of the fields the rewrite cares about key is. fasthttp
// stores keys canonical, but the comparison ignores case anyway.
func classify(key []byte) int {
	switch len(key) {
	case 2: // Te
		if equalFoldASCII(key, "te") {
			return seenHop
		}
	case 3:
		if equalFoldASCII(key, "via") {
			return seenVia
		}
	case 6:
		if equalFoldASCII(key, "expect") {
			return seenHop
		}
	case 7:
		if equalFoldASCII(key, "trailer") || equalFoldASCII(key, "upgrade") {
			return seenHop
		}
	case 10:
		if equalFoldASCII(key, "connection") || equalFoldASCII(key, "keep-alive") {
			return seenHop
		}
	case 12:
		if equalFoldASCII(key, "x-request-id") {
			return seenRequestID
		}
	case 14:
		if equalFoldASCII(key, "content-length") {
			return seenLength
		}
	case 15:
		if equalFoldASCII(key, "x-forwarded-for") {
			return seenForwarded
		}
	case 17:
		if equalFoldASCII(key, "transfer-encoding") {
			return seenHop | seenTE
		}
		if equalFoldASCII(key, "x-forwarded-proto") {
			return seenFwdHost
		}
	case 16, 18, 19:
		if equalFoldASCII(key, "x-forwarded-host") {
			return seenFwdHost
		}
		if equalFoldASCII(key, "proxy-connection") ||
			equalFoldASCII(key, "proxy-authenticate") || equalFoldASCII(key, "proxy-authorization") {
			return seenHop
		}
	}
	return 0
}

// scanRequest and scanResponse walk a header block once, so the common
// request (no hop-by-hop field, no prior proxy fields) is rewritten with
// appends only: no per-field key normalization, deletion or lookup.
//
// scanRequest reads the field names from the raw header block, a memchr
// per line, and also counts the fields (for limits.max_headers) and notes
// what badFraming needs, a line ended by LF alone among them.
// RequestHeader.All (and Len, which uses it) would parse the Cookie field
// into cookies, which Write then serializes again: a cost per request with
// cookies, and a rewrite of a field the gateway should forward as it came.
func scanRequest(h *fasthttp.RequestHeader) (seen, fields int) {
	for raw := h.RawHeaders(); len(raw) > 0; {
		var line []byte
		line, raw = nextLine(raw)
		if n := len(line); line[n-1] == '\n' && (n == 1 || line[n-2] != '\r') {
			seen |= seenBareLF
		}
		name := fieldName(line)
		if name == nil {
			continue // not a field line, or a continuation (obs-fold) of one
		}
		fields++
		c := classify(name)
		if c&seenTE != 0 && !equalFoldASCII(bytes.TrimSpace(line[bytes.IndexByte(line, ':')+1:]), "chunked") {
			c |= seenBadTE
		}
		seen |= c
	}
	return seen, fields
}

func scanResponse(h *fasthttp.ResponseHeader) (seen int) {
	for k := range h.All() {
		seen |= classify(k)
	}
	return seen
}

// requestIDs makes X-Request-Id values: a random per-process prefix and a
// counter, so ids are unique without a syscall per request. Exchanges take
// the counter in blocks of idBlock (see exchange.nextID), so the shared
// counter's cache line is written once per block, not once per request.
type requestIDs struct {
	prefix [16]byte
	n      atomic.Uint64
}

const idBlock = 64

func newRequestIDs() *requestIDs {
	var r requestIDs
	var b [8]byte
	_, _ = rand.Read(b[:])
	hex.Encode(r.prefix[:], b[:])
	return &r
}

// take reserves n consecutive counter values and returns the first.
func (r *requestIDs) take(n uint64) uint64 { return r.n.Add(n) - n + 1 }

// appendID appends the 32-hex-digit id for counter value v.
func (r *requestIDs) appendID(dst []byte, v uint64) []byte {
	dst = append(dst, r.prefix[:]...)
	var b [8]byte
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
	return hex.AppendEncode(dst, b[:])
}

// appendNextID appends a new request id, from the block x holds of p's
// counter.
func (x *exchange) appendNextID(dst []byte) []byte {
	ids := x.p.ids
	if x.ids != ids || x.idNext == x.idEnd {
		x.ids, x.idNext = ids, ids.take(idBlock)
		x.idEnd = x.idNext + idBlock
	}
	v := x.idNext
	x.idNext++
	return ids.appendID(dst, v)
}

// appendClientIP appends the client's IP address without allocating.
func appendClientIP(dst []byte, addr net.Addr) []byte {
	if ta, ok := addr.(*net.TCPAddr); ok {
		if ip4 := ta.IP.To4(); ip4 != nil {
			for i, b := range ip4 {
				if i > 0 {
					dst = append(dst, '.')
				}
				dst = strconv.AppendUint(dst, uint64(b), 10)
			}
			return dst
		}
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

// hopDrops is the dropSet of the hop-by-hop fields of h, a header in which
// scanRequest or scanResponse saw seen: the fixed ones and those its
// Connection lines name (their values, kept in x.hop).
func (x *exchange) hopDrops(h header, seen int) dropSet {
	if seen&seenHop == 0 {
		return dropSet{}
	}
	x.hop, _ = appendPrior(x.hop[:0], h, fasthttp.HeaderConnection)
	return dropSet{mask: seenHop, conn: x.hop}
}

// prepareRequest rewrites out (the client's request header, or a copy) into
// what the upstream receives; x.reqSeen is what scanRequest found in it.
// It removes the hop-by-hop fields, the client's X-Forwarded-Proto/-Host
// and repeated X-Forwarded-For or Via lines (joined into the gateway's
// own), keeping the order of the rest (dropRequestFields), and works out the
// values of the gateway's own fields (X-Forwarded-For/-Proto/-Host, Via,
// X-Request-Id), which then either go upstream as lines after the header
// block as it is (appendForwarding, for Stream) or are set on out
// (setForwarding). An error (the header read again did not parse) leaves
// out unusable.
func (x *exchange) prepareRequest(ctx *fasthttp.RequestCtx, out *fasthttp.RequestHeader) error {
	seen := x.reqSeen
	b := x.fwdValues[:0]
	var nFwd, nVia int
	if seen&seenForwarded != 0 {
		b, nFwd = appendPrior(b, out, fasthttp.HeaderXForwardedFor)
	}
	prior := len(b)
	b = x.p.clientIPs.appendIP(b, x.connID, ctx)
	via := len(b)
	if seen&seenVia != 0 {
		b, nVia = appendPrior(b, out, fasthttp.HeaderVia)
	}
	viaPrior := len(b) - via
	b = append(b, viaValue...)

	d := x.hopDrops(out, seen)
	// The gateway states these itself: every client line of them goes (a
	// Set replaces one line only; the lines path adds its own).
	d.mask |= seen & seenFwdHost
	x.xff, x.via = [2]int{0, via}, [2]int{via, len(b)}
	// Prior X-Forwarded-For and Via values named in a Connection line go
	// with it; several lines are removed so that SetCanonical, which
	// replaces one line, leaves the joined value alone.
	if nFwd > 0 && d.listed(hdrXForwardedFor) {
		x.xff[0] = prior
	}
	if nFwd > 1 {
		d.mask |= seenForwarded
	}
	if nVia > 0 && d.listed(hdrVia) {
		x.via[0] += viaPrior
	}
	if nVia > 1 {
		d.mask |= seenVia
	}
	if d.mask != 0 {
		if err := x.dropRequestFields(out, &d); err != nil {
			return err
		}
	}
	out.ResetConnectionClose()

	x.reqID = x.reqID[:0]
	var id []byte
	if seen&seenRequestID != 0 {
		id = out.PeekCanonical(hdrXRequestID)
	}
	keepID := len(id) > 0 && len(id) <= 128
	if keepID {
		x.reqID = append(x.reqID, id...)
	} else {
		x.reqID = x.appendNextID(x.reqID)
	}
	x.addID = !keepID
	// A prior line to replace takes a Set, which replaces it in place.
	x.fwdLines = nFwd == 0 && nVia == 0 && (keepID || seen&seenRequestID == 0)
	x.fwdValues = b
	return nil
}

// setForwarding sets the gateway's fields (see prepareRequest) on out.
func (x *exchange) setForwarding(ctx *fasthttp.RequestCtx, out *fasthttp.RequestHeader) {
	b := x.fwdValues
	out.SetCanonical(hdrXForwardedFor, b[x.xff[0]:x.xff[1]])
	if ctx.IsTLS() {
		out.SetCanonical(hdrXForwardedProt, strHTTPS)
	} else {
		out.SetCanonical(hdrXForwardedProt, strHTTP)
	}
	out.SetCanonical(hdrXForwardedHost, ctx.Host())
	out.SetCanonical(hdrVia, b[x.via[0]:x.via[1]])
	if x.addID {
		out.SetCanonical(hdrXRequestID, x.reqID)
	}
}

// appendForwarding appends the gateway's fields (see prepareRequest) to dst
// as header lines, for a request x.fwdLines allows it for.
func (x *exchange) appendForwarding(dst []byte, ctx *fasthttp.RequestCtx) []byte {
	b := x.fwdValues
	dst = append(append(dst, "X-Forwarded-For: "...), b[x.xff[0]:x.xff[1]]...)
	if ctx.IsTLS() {
		dst = append(dst, "\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: "...)
	} else {
		dst = append(dst, "\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: "...)
	}
	dst = appendFieldValue(dst, ctx.Host())
	dst = append(append(dst, "\r\nVia: "...), b[x.via[0]:x.via[1]]...)
	if x.addID {
		dst = append(append(dst, "\r\nX-Request-Id: "...), x.reqID...)
	}
	return append(dst, '\r', '\n')
}

// appendFieldValue appends v with any CR or LF in it turned into a space
// (as fasthttp's Set does), so that it stays one field line.
func appendFieldValue(dst, v []byte) []byte {
	n := len(dst)
	dst = append(dst, v...)
	for i := n; i < len(dst); i++ {
		if dst[i] == '\r' || dst[i] == '\n' {
			dst[i] = ' '
		}
	}
	return dst
}

// prepareResponse removes hop-by-hop fields from the upstream response
// headers already copied into h, keeping the order of the rest
// (dropResponseFields), and adds Via and X-Request-Id (prior Via values
// read first, as in prepareRequest).
func (x *exchange) prepareResponse(h *fasthttp.ResponseHeader) {
	if !h.IsHTTP11() {
		asHTTP11(h)
	}
	seen := scanResponse(h)
	b := x.scratch[:0]
	var nVia int
	if seen&seenVia != 0 {
		b, nVia = appendPrior(b, h, fasthttp.HeaderVia)
	}
	viaPrior := len(b)
	b = append(b, viaValue...)
	d := x.hopDrops(h, seen)
	vb := b
	if nVia > 0 && d.listed(hdrVia) {
		vb = vb[viaPrior:]
	}
	if nVia > 1 {
		d.mask |= seenVia
	}
	if d.mask != 0 {
		x.dropResponseFields(h, &d)
	}
	h.ResetConnectionClose()
	h.SetCanonical(hdrVia, vb)
	if seen&seenRequestID == 0 || len(h.PeekCanonical(hdrXRequestID)) == 0 {
		h.SetCanonical(hdrXRequestID, x.reqID)
	}
	x.scratch = b
}

// asHTTP11 turns h, read from an HTTP/1.0 upstream, into the same header
// as an HTTP/1.1 response: the gateway answers its client in its own
// version (RFC 9110 §6.2). fasthttp would otherwise write the upstream's
// status line and, taking the response for HTTP/1.0, drop the
// Transfer-Encoding field of a body it still writes chunked. The header
// has no setter for its version, so it is parsed again; a Connection: close
// the HTTP/1.0 header implied (no keep-alive) is in what is parsed. Rare:
// HTTP/1.0 upstreams only.
func asHTTP11(h *fasthttp.ResponseHeader) {
	b := h.Header()
	i := bytes.IndexByte(b, ' ')
	if i < 0 {
		return
	}
	raw := append([]byte("HTTP/1.1"), b[i:]...)
	_ = h.Read(bufio.NewReader(bytes.NewReader(raw)))
}
