package proxy

import (
	"errors"
	"io"
)

// upstreamBody reads an upstream SSE body straight from its connection
// instead of through the pooled 4 KiB connection reader, so that an open
// stream waiting for its next event holds no read buffer but the parser's.
// A chunked body is decoded in place, in the caller's buffer.
type upstreamBody struct {
	pre     *[]byte // body bytes the connection reader had buffered; read first
	off     int
	conn    io.Reader
	chunked bool

	st           int
	size         int64 // chunk size being parsed, then data left in the chunk
	digits       int
	trailerEmpty bool // the trailer line read so far is empty
	done         bool // the last chunk and trailer were read
	extra        bool // bytes followed the end of the body: do not reuse the connection
}

// Chunked decoding states.
const (
	stSize   = iota // chunk-size hex digits
	stExt           // chunk extension, up to LF
	stData          // chunk data
	stDataCR        // CRLF after chunk data
	stDataLF
	stTrailer // trailer lines, up to an empty one
)

var errBadChunk = errors.New("malformed chunked encoding from upstream")

func (u *upstreamBody) Read(b []byte) (int, error) {
	if u.done {
		return 0, io.EOF
	}
	for {
		n, err := u.readRaw(b)
		if !u.chunked {
			return n, err
		}
		m, derr := u.decode(b[:n])
		if derr != nil {
			return 0, derr
		}
		if u.done {
			return m, io.EOF
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the connection ended inside the body
		}
		if m > 0 || err != nil {
			return m, err
		}
	}
}

func (u *upstreamBody) readRaw(b []byte) (int, error) {
	if u.pre == nil {
		return u.conn.Read(b)
	}
	n := copy(b, (*u.pre)[u.off:])
	u.off += n
	if u.off == len(*u.pre) {
		putOut(u.pre)
		u.pre = nil
	}
	return n, nil
}

// release returns what u holds to its pool.
func (u *upstreamBody) release() {
	if u.pre != nil {
		putOut(u.pre)
		u.pre = nil
	}
}

// decode strips the chunked framing from p in place and returns the length
// of the data left at its start.
func (u *upstreamBody) decode(p []byte) (int, error) {
	w := 0
	for i := 0; i < len(p); {
		c := p[i]
		switch u.st {
		case stSize:
			switch {
			case c == '\n':
				if u.digits == 0 {
					return 0, errBadChunk
				}
				u.endSizeLine()
			case c == '\r':
			case c == ';' || c == ' ' || c == '\t':
				if u.digits == 0 {
					return 0, errBadChunk
				}
				u.st = stExt
			default:
				v := unhex(c)
				if v < 0 || u.digits == 15 {
					return 0, errBadChunk
				}
				u.size = u.size<<4 | int64(v)
				u.digits++
			}
			i++
		case stExt:
			if c == '\n' {
				u.endSizeLine()
			}
			i++
		case stData:
			k := min(int64(len(p)-i), u.size)
			copy(p[w:], p[i:i+int(k)])
			w += int(k)
			i += int(k)
			if u.size -= k; u.size == 0 {
				u.st = stDataCR
			}
		case stDataCR:
			switch c {
			case '\r':
				u.st = stDataLF
			case '\n':
				u.st = stSize
			default:
				return 0, errBadChunk
			}
			i++
		case stDataLF:
			if c != '\n' {
				return 0, errBadChunk
			}
			u.st = stSize
			i++
		case stTrailer:
			i++
			switch c {
			case '\n':
				if u.trailerEmpty {
					u.done = true
					u.extra = i < len(p) || u.pre != nil
					return w, nil
				}
				u.trailerEmpty = true
			case '\r':
			default:
				u.trailerEmpty = false
			}
		}
	}
	return w, nil
}

func (u *upstreamBody) endSizeLine() {
	u.digits = 0
	if u.size == 0 {
		u.st, u.trailerEmpty = stTrailer, true
		return
	}
	u.st = stData
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
