package proxy

import (
	"bufio"
	"bytes"
	"errors"

	"github.com/valyala/fasthttp"
)

// Removing field lines keeps the order of the rest. fasthttp's DelBytes
// moves the last line of the header's field list into the place of each
// line it deletes, which reorders lines of one name (RFC 9110 §5.3: their
// order is significant, and a proxy must not change it) and unrelated lines.
// So DelBytes is used only when every line to delete comes after every line
// kept in that list, which leaves nothing to move: the common case, such as
// a Connection: keep-alive at the end. Otherwise a request header is read
// again from its own header block without those lines (everything else as
// the client sent it, Cookie included), and a response header has the tail
// of its field list from the first line to delete on removed and added back
// in order. fasthttp writes the fields it keeps apart (Host, User-Agent,
// Content-Type, Content-Length; Server, Set-Cookie in a response) in fixed
// places either way.

// dropSet names the field lines a rewrite removes: those of a class
// (classify) in mask, and those named in conn, the values of the Connection
// lines (comma-separated), as RFC 9110 §7.6.1 asks. The hop-by-hop class
// is Connection, Proxy-Connection, Keep-Alive, Proxy-Authenticate,
// Proxy-Authorization, TE, Trailer, Transfer-Encoding, Upgrade (the
// gateway does not tunnel upgraded protocols; fasthttp does not relay
// trailer fields through a streamed body) and Expect (the gateway answers
// 100-continue itself).
type dropSet struct {
	mask int
	conn []byte
}

// has reports whether the line named name goes. Host never does: it is the
// request's authority, not a connection option.
func (d *dropSet) has(name []byte) bool {
	if classify(name)&d.mask != 0 {
		return true
	}
	return len(d.conn) > 0 && !equalFoldASCII(name, "host") && d.listed(name)
}

// listed reports whether a Connection line names name.
func (d *dropSet) listed(name []byte) bool {
	for rest := d.conn; len(rest) > 0; {
		opt := rest
		if i := bytes.IndexByte(rest, ','); i >= 0 {
			opt, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if opt = bytes.TrimSpace(opt); len(opt) > 0 && bytes.EqualFold(opt, name) {
			return true
		}
	}
	return false
}

// fieldName returns the name of a header line (without its line end), or
// nil for a continuation line (obs-fold) or no field line.
func fieldName(line []byte) []byte {
	if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
		return nil
	}
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return nil
	}
	return bytes.TrimRight(line[:i], " \t")
}

// nextLine splits the first line (with its LF) off raw.
func nextLine(raw []byte) (line, rest []byte) {
	if i := bytes.IndexByte(raw, '\n'); i >= 0 {
		return raw[:i+1], raw[i+1:]
	}
	return raw, nil
}

// apartInRequest reports whether fasthttp keeps a request field outside its
// field list, where a delete cannot move it.
func apartInRequest(name []byte) bool {
	switch len(name) {
	case 4:
		return equalFoldASCII(name, "host")
	case 10:
		return equalFoldASCII(name, "user-agent")
	case 12:
		return equalFoldASCII(name, "content-type")
	case 14:
		return equalFoldASCII(name, "content-length")
	}
	return false
}

// errRebuild: a request header read again from its own lines did not parse.
var errRebuild = errors.New("request header rebuilt without its hop-by-hop fields does not parse")

// dropRequestFields removes the lines d names from h (a request header
// fasthttp parsed, or a copy of one), keeping the order of the rest. The
// header is read again from its header block when a delete would reorder;
// an error then leaves h reset.
func (x *exchange) dropRequestFields(h *fasthttp.RequestHeader, d *dropSet) error {
	raw := h.RawHeaders()
	dropped, reorders := false, false
	for rest := raw; len(rest) > 0 && !reorders; {
		var line []byte
		line, rest = nextLine(rest)
		name := fieldName(line)
		switch {
		case name == nil:
		case d.has(name):
			dropped = true
		case dropped && !apartInRequest(name):
			reorders = true
		}
	}
	if !reorders {
		for rest := raw; len(rest) > 0; {
			var line []byte
			line, rest = nextLine(rest)
			if name := fieldName(line); name != nil && d.has(name) {
				h.DelBytes(name)
			}
		}
		return nil
	}

	// The request line and Host as they stand (toOriginForm may have set
	// both), then the client's lines but those dropped.
	b := append(x.block[:0], h.Method()...)
	b = append(append(b, ' '), h.RequestURI()...)
	b = append(append(b, ' '), h.Protocol()...)
	b = append(b, '\r', '\n')
	if host := h.Host(); len(host) > 0 {
		b = append(append(append(b, "Host: "...), host...), '\r', '\n')
	}
	skip := false
	for rest := raw; len(rest) > 0; {
		var line []byte
		line, rest = nextLine(rest)
		if name := fieldName(line); name != nil {
			skip = d.has(name) || equalFoldASCII(name, "host")
		} else if len(line) > 0 && line[0] != ' ' && line[0] != '\t' {
			skip = true // the block's end, or no field line
		}
		if !skip {
			b = append(b, line...)
		}
	}
	b = append(b, '\r', '\n')
	x.block = b
	x.blockReader.Reset(b)
	if x.br == nil || x.br.Size() < len(b) {
		x.br = bufio.NewReaderSize(&x.blockReader, max(len(b), 4<<10))
	} else {
		x.br.Reset(&x.blockReader)
	}
	if err := h.Read(x.br); err != nil {
		return errors.Join(errRebuild, err)
	}
	return nil
}

// responseField is one line of a response header's field list, its name
// and value in exchange.fields: name is fields[start:mid], value
// fields[mid:end].
type responseField struct {
	start, mid, end int
	drop            bool
	apart           bool // apartInResponse
}

// apartInResponse reports whether fasthttp keeps a response field outside
// its field list. Date is in the list (a delete of it moves the last line
// into its place), so it is not apart; fasthttp does not add it back, which
// changes nothing the client sees: the server writes its own Date.
func apartInResponse(name []byte) bool {
	switch len(name) {
	case 6:
		return equalFoldASCII(name, "server")
	case 7:
		return equalFoldASCII(name, "trailer")
	case 10:
		return equalFoldASCII(name, "set-cookie")
	case 12:
		return equalFoldASCII(name, "content-type")
	case 14:
		return equalFoldASCII(name, "content-length")
	case 16:
		return equalFoldASCII(name, "content-encoding")
	}
	return false
}

// dropResponseFields removes the lines d names from h, keeping the order of
// the rest.
func (x *exchange) dropResponseFields(h *fasthttp.ResponseHeader, d *dropSet) {
	buf, lines := x.fields[:0], x.fieldLines[:0]
	dropped, reorders := false, false
	for k, v := range h.All() {
		f := responseField{start: len(buf), drop: d.has(k), apart: apartInResponse(k)}
		buf = append(buf, k...)
		f.mid = len(buf)
		buf = append(buf, v...)
		f.end = len(buf)
		if !f.apart {
			reorders = reorders || dropped && !f.drop
			dropped = dropped || f.drop
		}
		lines = append(lines, f)
	}
	x.fields, x.fieldLines = buf, lines
	name := func(f responseField) []byte { return buf[f.start:f.mid] }
	if !reorders {
		for _, f := range lines {
			if f.drop {
				h.DelBytes(name(f))
			}
		}
		return
	}
	// Fields kept apart go first: deleting them moves nothing in the list.
	n, first := 0, -1
	for _, f := range lines {
		if f.apart {
			if f.drop {
				h.DelBytes(name(f))
			}
			continue
		}
		if f.drop && first < 0 {
			first = n
		}
		lines[n] = f
		n++
	}
	lines = lines[:n]
	// Rebuild the list from the first line to delete on. A name with lines
	// both sides of that point moves the point back to its first line, so
	// that deleting a name never touches the lines kept in place (a delete
	// only moves lines from the end of the list).
	start := first
	for moved := true; moved; {
		moved = false
		for _, f := range lines[start:] {
			for j := range start {
				if bytes.EqualFold(name(lines[j]), name(f)) {
					start, moved = j, true
					break
				}
			}
		}
	}
	tail := lines[start:]
	for i, f := range tail {
		seen := false
		for _, g := range tail[:i] {
			if seen = bytes.EqualFold(name(g), name(f)); seen {
				break
			}
		}
		if !seen {
			h.DelBytes(name(f))
		}
	}
	for _, f := range tail {
		if !f.drop {
			h.AddBytesKV(name(f), buf[f.mid:f.end])
		}
	}
}
