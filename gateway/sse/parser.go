// Package sse reads and writes the Server-Sent Events wire format
// (text/event-stream) as the WHATWG HTML standard defines it for EventSource.
//
// The gateway relays SSE streams event by event: each event must reach the
// plugin chain whole, and an event nobody changed must reach the client
// byte-identical. So the [Parser] does not only decode fields, it also hands
// out the exact bytes of every event block ([Event.Raw]), and it does so
// without allocating per event and without ever holding more than
// maxEventBytes of one event in memory.
//
// # What an event is here
//
// The stream is cut into blocks: the lines up to and including the blank line
// that ends them. Every block is returned by [Parser.Next], also those a
// browser would not dispatch (comment-only heartbeats, id-only or retry-only
// blocks, stray blank lines); [Event.Dispatchable] tells them apart. The
// concatenation of all Raw values is the stream minus a leading byte order
// mark, so a relay that writes every Raw reproduces the stream.
//
// Field rules follow the standard: lines end in LF, CR or CRLF; a line
// starting with ':' is a comment; the field name is what precedes the first
// colon (or the whole line), and one space after the colon is dropped; "data"
// lines are joined with LF; "event" sets the name; "id" is ignored if its value
// contains NUL; "retry" counts only when it is all ASCII digits; unknown
// fields are ignored. A UTF-8 byte order mark at the very start of the stream
// is skipped. Bytes are not UTF-8 decoded: invalid sequences pass through
// unchanged instead of becoming U+FFFD, which keeps relaying byte-exact.
//
// # Line ends split across reads
//
// When a block's final CR is the last byte available, the parser cannot know
// whether an LF follows without blocking, so it returns the block at once (a
// browser would dispatch it too). If that LF then arrives, it is returned as a
// block of its own (Raw "\n", no fields). The field values are the same either
// way, and so is the concatenation of Raw.
//
// # Size limit
//
// A block is too large when its bytes, up to and including the first byte of
// the line end of its closing blank line, exceed maxEventBytes; Raw may
// therefore be one byte longer (the LF of a closing CRLF). Next then returns
// [ErrEventTooLarge] after having buffered at most maxEventBytes+1 bytes, and
// the parser stays failed.
package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"unsafe"
)

// DefaultMaxEventBytes is the event size limit used when NewParser is given
// zero or less. It matches the gateway's sse.max_event_bytes default.
const DefaultMaxEventBytes = 1 << 20

// DefaultBufferSize is the read buffer a Parser starts with. The buffer grows
// (up to maxEventBytes+1) only for an event that does not fit.
const DefaultBufferSize = 4096

// shrinkAbove is the buffer size past which a Parser returns to its initial
// buffer once the large event is consumed, so that one big event does not pin
// memory for the rest of a long-lived stream.
const shrinkAbove = 64 << 10

// ErrEventTooLarge is returned by Parser.Next when an event exceeds the size
// limit.
var ErrEventTooLarge = errors.New("sse: event too large")

var errNoReader = errors.New("sse: parser has no reader (Reset(nil))")

// Event is one block of an event stream.
type Event struct {
	// Raw is the block's exact wire bytes, including the blank line that
	// ends it. From Parser.Next it is valid until the next Next call.
	Raw []byte
	// ID is the value of the block's last valid "id" field and HasID tells
	// whether there was one ("id:" with an empty value is valid and resets
	// the last event id).
	ID    string
	HasID bool
	// LastEventID is the stream's last event id after this block, as an
	// EventSource would report it: ids persist across blocks until reset.
	// Parse sets it to ID.
	LastEventID string
	// Name is the "event" field; "" means "message".
	Name string
	// Data is the "data" lines joined with "\n", without a trailing newline.
	// From Parser.Next it is valid until the next Next call.
	Data []byte
	// Retry is the "retry" field in milliseconds, or -1.
	Retry int64

	dispatch bool
}

// Dispatchable reports whether an EventSource would dispatch this block to
// the page: it had at least one "data" field. Comment-only, id-only and
// retry-only blocks are not dispatchable.
func (e *Event) Dispatchable() bool { return e.dispatch }

// block accumulates the fields of the block being scanned. Spans are offsets
// from the start of the block, so they survive the parser moving the block
// within its buffer.
type block struct {
	dataLines          int
	data0Start, data0E int
	hasID              bool
	idStart, idEnd     int
	hasName            bool
	nameStart, nameEnd int
	retry              int64
}

func (b *block) reset() { *b = block{retry: -1} }

// line applies one non-blank line, blk[ls:le], to the block. Data lines after
// the first are appended to *data at once (the block's bytes may move before
// dispatch), whose capacity never grows past limit.
func (b *block) line(blk []byte, ls, le int, data *[]byte, limit int) {
	if blk[ls] == ':' {
		return
	}
	l := blk[ls:le]
	name, vs := l, le
	if c := bytes.IndexByte(l, ':'); c >= 0 {
		name, vs = l[:c], ls+c+1
		if vs < le && blk[vs] == ' ' {
			vs++
		}
	}
	switch string(name) {
	case "data":
		b.dataLines++
		switch b.dataLines {
		case 1:
			b.data0Start, b.data0E = vs, le
		case 2:
			*data = appendBounded((*data)[:0], blk[b.data0Start:b.data0E], limit)
			fallthrough
		default:
			*data = appendBounded(*data, lf, limit)
			*data = appendBounded(*data, blk[vs:le], limit)
		}
	case "event":
		b.hasName, b.nameStart, b.nameEnd = true, vs, le
	case "id":
		if bytes.IndexByte(blk[vs:le], 0) < 0 {
			b.hasID, b.idStart, b.idEnd = true, vs, le
		}
	case "retry":
		if n, ok := parseRetry(blk[vs:le]); ok {
			b.retry = n
		}
	}
}

var lf = []byte{'\n'}

// appendBounded is append whose growth stops at limit bytes of capacity
// (the joined data of an event is never longer than the event).
func appendBounded(dst, b []byte, limit int) []byte {
	if need := len(dst) + len(b); need > cap(dst) {
		nc := min(max(2*cap(dst), need, 64), max(limit, need))
		nd := make([]byte, len(dst), nc)
		copy(nd, dst)
		dst = nd
	}
	return append(dst, b...)
}

func parseRetry(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (1<<63-1-int64(c-'0'))/10 {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// Parser reads events from a stream. It is not safe for concurrent use.
type Parser struct {
	r        io.Reader
	max      int
	initSize int
	bufLimit int

	buf       []byte
	end       int // buf[:end] holds bytes read
	evStart   int // start of the block being scanned
	lineStart int // start of the line being scanned
	pos       int // scan position
	skipLF    bool
	bomDone   bool
	rerr      error // read error to report once the buffer is drained
	err       error // sticky parse error

	blk    block
	data   []byte
	lastID string
	name   string // last name handed out, reused while it repeats
	arena  []byte // backing store for id and name strings; never rewritten
	ev     Event
}

// NewParser returns a Parser reading r that fails with ErrEventTooLarge on
// an event over maxEventBytes (zero or less means DefaultMaxEventBytes).
func NewParser(r io.Reader, maxEventBytes int) *Parser {
	return NewParserSize(r, maxEventBytes, DefaultBufferSize)
}

// NewParserSize is NewParser with an initial read buffer of bufSize bytes
// (at least 16). A smaller buffer saves memory per idle stream; a larger one
// means fewer reads for big events.
func NewParserSize(r io.Reader, maxEventBytes, bufSize int) *Parser {
	if maxEventBytes <= 0 {
		maxEventBytes = DefaultMaxEventBytes
	}
	limit := max(maxEventBytes+1, 16)
	bufSize = min(max(bufSize, 16), limit)
	p := &Parser{max: maxEventBytes, initSize: bufSize, bufLimit: limit}
	p.Reset(r)
	return p
}

// Reset makes p read a new stream from r, keeping its buffers, so that
// parsers can be pooled.
func (p *Parser) Reset(r io.Reader) {
	if p.buf == nil || len(p.buf) > shrinkAbove {
		p.buf = make([]byte, p.initSize)
	}
	if cap(p.data) > shrinkAbove {
		p.data = nil
	}
	p.r = r
	p.end, p.evStart, p.lineStart, p.pos = 0, 0, 0, 0
	p.skipLF, p.bomDone = false, false
	p.rerr, p.err = nil, nil
	p.lastID, p.name = "", ""
	p.ev = Event{}
}

// Next returns the next block. It returns io.EOF when the stream ends after a
// complete block, io.ErrUnexpectedEOF when it ends inside one (the partial
// block is discarded, as an EventSource does), ErrEventTooLarge for an event
// over the limit, or the reader's error. After an error every call returns
// the same error. The returned Event, its Raw and its Data are valid until
// the next call.
func (p *Parser) Next() (*Event, error) {
	if p.err != nil {
		return nil, p.err
	}
	p.maybeShrink()
	if !p.bomDone {
		if err := p.skipBOM(); err != nil {
			return nil, p.fail(err)
		}
	}
	p.evStart, p.lineStart = p.pos, p.pos
	p.blk.reset()
	for {
		for p.pos < p.end {
			if p.skipLF {
				p.skipLF = false
				if p.buf[p.pos] == '\n' {
					p.pos++
					if p.pos-1 == p.evStart {
						// The LF of a CRLF whose CR ended the previous block.
						return p.dispatch(), nil
					}
					p.lineStart = p.pos
					continue
				}
			}
			i := indexLineEnd(p.buf[p.pos:p.end])
			if i < 0 {
				p.pos = p.end
				break
			}
			le := p.pos + i
			next := le + 1
			if p.buf[le] == '\r' {
				if next < p.end {
					if p.buf[next] == '\n' {
						next++
					}
				} else {
					p.skipLF = true
				}
			}
			if le+1-p.evStart > p.max {
				return nil, p.fail(ErrEventTooLarge)
			}
			if le == p.lineStart {
				p.pos = next
				return p.dispatch(), nil
			}
			p.blk.line(p.buf[p.evStart:], p.lineStart-p.evStart, le-p.evStart, &p.data, p.max)
			p.pos, p.lineStart = next, next
		}
		if p.end-p.evStart > p.max {
			return nil, p.fail(ErrEventTooLarge)
		}
		if err := p.fill(); err != nil {
			if err == io.EOF && p.end > p.evStart {
				err = io.ErrUnexpectedEOF
			}
			return nil, p.fail(err)
		}
	}
}

func (p *Parser) fail(err error) error {
	p.err = err
	return err
}

func indexLineEnd(b []byte) int {
	// Lines end in LF far more often than in CR: find the first LF, then look
	// for a CR only before it.
	n := bytes.IndexByte(b, '\n')
	if n < 0 {
		return bytes.IndexByte(b, '\r')
	}
	if c := bytes.IndexByte(b[:n], '\r'); c >= 0 {
		return c
	}
	return n
}

var bom = []byte{0xEF, 0xBB, 0xBF}

// skipBOM drops a byte order mark at the start of the stream, reading until
// it has three bytes, a mismatch, or the end of the stream.
func (p *Parser) skipBOM() error {
	for {
		n := p.end - p.pos
		if n >= len(bom) || !bytes.HasPrefix(bom, p.buf[p.pos:p.end]) {
			break
		}
		if err := p.fill(); err != nil {
			if err == io.EOF {
				break
			}
			return err
		}
	}
	if bytes.HasPrefix(p.buf[p.pos:p.end], bom) {
		p.pos += len(bom)
	}
	p.bomDone = true
	return nil
}

// fill reads more bytes, first moving the current block to the front of the
// buffer and growing the buffer (up to bufLimit) if the block fills it.
func (p *Parser) fill() error {
	if p.rerr != nil {
		return p.rerr
	}
	if p.r == nil {
		return errNoReader
	}
	if p.evStart > 0 {
		n := copy(p.buf, p.buf[p.evStart:p.end])
		shift := p.evStart
		p.end, p.pos, p.lineStart, p.evStart = n, p.pos-shift, p.lineStart-shift, 0
	}
	if p.end == len(p.buf) {
		if len(p.buf) >= p.bufLimit {
			return ErrEventTooLarge // unreachable: Next checks the size first
		}
		nb := make([]byte, min(2*len(p.buf), p.bufLimit))
		copy(nb, p.buf[:p.end])
		p.buf = nb
	}
	for range 100 {
		n, err := p.r.Read(p.buf[p.end:])
		if n < 0 || n > len(p.buf)-p.end {
			return fmt.Errorf("sse: reader returned invalid count %d", n)
		}
		p.end += n
		if err != nil {
			if n > 0 {
				p.rerr = err
				return nil
			}
			return err
		}
		if n > 0 {
			return nil
		}
	}
	return io.ErrNoProgress
}

// maybeShrink returns to the initial buffer after a large event, once the
// previous event's Raw is no longer valid.
func (p *Parser) maybeShrink() {
	if len(p.buf) > shrinkAbove && p.end-p.pos <= p.initSize {
		nb := make([]byte, p.initSize)
		p.end = copy(nb, p.buf[p.pos:p.end])
		p.pos, p.evStart, p.lineStart = 0, 0, 0
		p.buf = nb
	}
	if cap(p.data) > shrinkAbove {
		p.data = nil
	}
}

func (p *Parser) dispatch() *Event {
	raw := p.buf[p.evStart:p.pos]
	b := &p.blk
	ev := &p.ev
	ev.Raw = raw
	ev.Retry = b.retry
	ev.dispatch = b.dataLines > 0
	switch b.dataLines {
	case 0:
		ev.Data = nil
	case 1:
		ev.Data = raw[b.data0Start:b.data0E:b.data0E]
	default:
		ev.Data = p.data
	}
	ev.HasID, ev.ID = b.hasID, ""
	if b.hasID {
		p.lastID = p.intern(raw[b.idStart:b.idEnd], p.lastID)
		ev.ID = p.lastID
	}
	ev.LastEventID = p.lastID
	ev.Name = ""
	if b.hasName {
		p.name = p.intern(raw[b.nameStart:b.nameEnd], p.name)
		ev.Name = p.name
	}
	return ev
}

// arenaSize is the chunk id and name strings are carved from: a stream whose
// ids change every event allocates once per arenaSize bytes of ids instead of
// once per event.
const arenaSize = 512

// intern returns b as a string, reusing prev when equal. New strings point
// into an append-only arena whose bytes are never written again, so they
// stay valid and immutable after the parser moves on; a string that callers
// keep pins at most one arena chunk.
func (p *Parser) intern(b []byte, prev string) string {
	if string(b) == prev {
		return prev
	}
	if len(b) == 0 {
		return ""
	}
	if len(b) > arenaSize/4 {
		return string(b)
	}
	if cap(p.arena)-len(p.arena) < len(b) {
		p.arena = make([]byte, 0, arenaSize)
	}
	off := len(p.arena)
	p.arena = append(p.arena, b...)
	return unsafe.String(&p.arena[off], len(b))
}

// Parse parses raw as exactly one complete block: lines ending in a blank
// line, with nothing after it. A missing blank line is io.ErrUnexpectedEOF;
// bytes after it are an error. The Event's Raw is raw and its Data may alias
// raw; LastEventID equals ID.
func Parse(raw []byte) (Event, error) {
	var b block
	b.reset()
	var data []byte
	ls := 0
	for pos := 0; pos < len(raw); {
		i := indexLineEnd(raw[pos:])
		if i < 0 {
			break
		}
		le := pos + i
		next := le + 1
		if raw[le] == '\r' && next < len(raw) && raw[next] == '\n' {
			next++
		}
		if le == ls {
			if next != len(raw) {
				return Event{}, fmt.Errorf("sse: %d bytes after the end of the event", len(raw)-next)
			}
			ev := Event{Raw: raw, Retry: b.retry, dispatch: b.dataLines > 0, HasID: b.hasID}
			switch b.dataLines {
			case 0:
			case 1:
				ev.Data = raw[b.data0Start:b.data0E:b.data0E]
			default:
				ev.Data = data
			}
			if b.hasID {
				ev.ID = string(raw[b.idStart:b.idEnd])
				ev.LastEventID = ev.ID
			}
			if b.hasName {
				ev.Name = string(raw[b.nameStart:b.nameEnd])
			}
			return ev, nil
		}
		b.line(raw, ls, le, &data, len(raw))
		pos, ls = next, next
	}
	return Event{}, fmt.Errorf("sse: event not ended by a blank line: %w", io.ErrUnexpectedEOF)
}
