package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/wasmgate/wasmgate/gateway/event"
)

// encodingV1 is the first byte of every encoded event value.
const encodingV1 = 1

// Field bits of the v1 encoding, in the order the fields follow the bitmap.
// Append new bits; never renumber.
const (
	fRoute = 1 << iota
	fRequestID
	fMethod
	fPath
	fHeaders
	fBody
	fBodyBytes
	fStatus
	fLatency
	fStream
	fEventID
	fEventName
	fData
	fPlugin
	fDecision
	fMessage
	// fCodedHeaders replaces fHeaders (which the decoder still reads):
	// a name from headerNames is written as its index, and a value equal
	// to the event's RequestID (X-Request-Id) as a back reference. A
	// recorded exchange is mostly header names; this third off its size
	// cuts what the log, the memtable and every flush carry.
	fCodedHeaders
	fAll = 1<<iota - 1
)

// headerNames are the header names fCodedHeaders writes as an index
// (1-based; 0 is a literal name), as fasthttp spells them. The index is
// stored: append new names, never reorder or remove.
var headerNames = [...]string{
	"Host", "User-Agent", "Accept", "Accept-Encoding", "Accept-Language",
	"Content-Type", "Content-Length", "Content-Encoding", "Transfer-Encoding", "Connection",
	"Cache-Control", "Date", "Server", "Via", "X-Forwarded-For",
	"X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-Id", "Mcp-Session-Id", "Mcp-Protocol-Version",
	"Last-Event-Id", "Authorization", "Cookie", "Set-Cookie", "X-Api-Key",
	"Origin", "Referer", "Etag", "Last-Modified", "Vary",
	"Location", "Keep-Alive", "Upgrade", "Pragma", "Expires",
	"Traceparent", "Tracestate", "If-None-Match", "If-Modified-Since", "Access-Control-Allow-Origin",
	"Strict-Transport-Security", "X-Content-Type-Options", "Te", "Trailer", "Forwarded",
}

// headerIndex returns name's headerNames index (0 if absent). It compares
// against the names of the same length, which beat a map's string hash
// for a table this size.
func headerIndex(name string) uint64 {
	if len(name) >= len(headerNamesByLen) {
		return 0
	}
	for _, i := range headerNamesByLen[len(name)] {
		if headerNames[i-1] == name {
			return uint64(i)
		}
	}
	return 0
}

// headerNamesByLen[n] lists the indexes of the n-byte names.
var headerNamesByLen = func() [][]uint8 {
	var t [][]uint8
	for i, n := range headerNames {
		if len(n) >= len(t) {
			t = append(t, make([][]uint8, len(n)+1-len(t))...)
		}
		t[len(n)] = append(t[len(n)], uint8(i+1))
	}
	return t
}()

var errTruncated = errors.New("truncated event value")

// appendEvent appends the v1 encoding of e (without Session and Seq, which
// live in the key).
func appendEvent(dst []byte, e *event.Event) []byte {
	var mask uint64
	set := func(bit uint64, present bool) {
		if present {
			mask |= bit
		}
	}
	set(fRoute, e.Route != "")
	set(fRequestID, e.RequestID != "")
	set(fMethod, e.Method != "")
	set(fPath, e.Path != "")
	set(fCodedHeaders, len(e.Headers) > 0)
	set(fBody, len(e.Body) > 0)
	set(fBodyBytes, e.BodyBytes != 0)
	set(fStatus, e.Status != 0)
	set(fLatency, e.Latency != 0)
	set(fStream, e.Stream != "")
	set(fEventID, e.EventID != "")
	set(fEventName, e.EventName != "")
	set(fData, len(e.Data) > 0)
	set(fPlugin, e.Plugin != "")
	set(fDecision, e.Decision != "")
	set(fMessage, e.Message != "")

	dst = append(dst, encodingV1, byte(e.Type))
	var t int64
	if !e.Time.IsZero() {
		t = e.Time.UnixNano()
	}
	dst = binary.AppendVarint(dst, t)
	dst = binary.AppendUvarint(dst, mask)
	str := func(s string) { dst = binary.AppendUvarint(dst, uint64(len(s))); dst = append(dst, s...) }
	byts := func(b []byte) { dst = binary.AppendUvarint(dst, uint64(len(b))); dst = append(dst, b...) }
	if mask&fRoute != 0 {
		str(e.Route)
	}
	if mask&fRequestID != 0 {
		str(e.RequestID)
	}
	if mask&fMethod != 0 {
		str(e.Method)
	}
	if mask&fPath != 0 {
		str(e.Path)
	}
	// (fHeaders is only read.)
	if mask&fBody != 0 {
		byts(e.Body)
	}
	if mask&fBodyBytes != 0 {
		dst = binary.AppendVarint(dst, e.BodyBytes)
	}
	if mask&fStatus != 0 {
		dst = binary.AppendVarint(dst, int64(e.Status))
	}
	if mask&fLatency != 0 {
		dst = binary.AppendVarint(dst, int64(e.Latency))
	}
	if mask&fStream != 0 {
		str(e.Stream)
	}
	if mask&fEventID != 0 {
		str(e.EventID)
	}
	if mask&fEventName != 0 {
		str(e.EventName)
	}
	if mask&fData != 0 {
		byts(e.Data)
	}
	if mask&fPlugin != 0 {
		str(e.Plugin)
	}
	if mask&fDecision != 0 {
		str(e.Decision)
	}
	if mask&fMessage != 0 {
		str(e.Message)
	}
	if mask&fCodedHeaders != 0 {
		// Each name is a uvarint: its headerNames index, or 0 and the
		// name. Each value is a uvarint: 0 for the RequestID, else its
		// length + 1 and the bytes.
		dst = binary.AppendUvarint(dst, uint64(len(e.Headers)))
		for _, h := range e.Headers {
			if i := headerIndex(h.Name); i != 0 {
				dst = binary.AppendUvarint(dst, i)
			} else {
				dst = append(dst, 0)
				str(h.Name)
			}
			if h.Value == e.RequestID && h.Value != "" {
				dst = append(dst, 0)
			} else {
				dst = binary.AppendUvarint(dst, uint64(len(h.Value))+1)
				dst = append(dst, h.Value...)
			}
		}
	}
	return dst
}

// decoder reads the fields of one value; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a uvarint element count and rejects one that cannot fit in
// what is left, each element taking at least min bytes: checked before
// anything is allocated for it.
func (d *decoder) count(min int) uint64 {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/min) {
		d.err = errTruncated
	}
	return n
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

// view returns the next length-prefixed bytes without a copy: the result
// aliases the value.
func (d *decoder) view() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errTruncated
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte { return append([]byte(nil), d.view()...) }

func (d *decoder) str() string { return string(d.view()) }

// eventHead reads the type and time (unix nanos; 0 if unreadable) of a
// value written by appendEvent without decoding the rest. ok is false if
// v is too short to hold them.
func eventHead(v []byte) (typ event.Type, unixNano int64, ok bool) {
	if len(v) < 2 {
		return 0, 0, false
	}
	if t, n := binary.Varint(v[2:]); n > 0 {
		unixNano = t
	}
	return event.Type(v[1]), unixNano, true
}

// decodeEvent decodes a value written by appendEvent into e (whose Session
// and Seq the caller sets from the key). It never panics on bad input.
func decodeEvent(v []byte, e *event.Event) error {
	if len(v) < 2 {
		return errTruncated
	}
	if v[0] != encodingV1 {
		return fmt.Errorf("event encoding version %d unknown", v[0])
	}
	e.Type = event.Type(v[1])
	d := decoder{b: v[2:]}
	if t := d.varint(); t != 0 {
		e.Time = time.Unix(0, t).UTC()
	}
	mask := d.uvarint()
	if d.err != nil {
		return d.err
	}
	if mask&^fAll != 0 {
		return fmt.Errorf("event has unknown field bits %#x", mask&^fAll)
	}
	if mask&fRoute != 0 {
		e.Route = d.str()
	}
	if mask&fRequestID != 0 {
		e.RequestID = d.str()
	}
	if mask&fMethod != 0 {
		e.Method = d.str()
	}
	if mask&fPath != 0 {
		e.Path = d.str()
	}
	if mask&fHeaders != 0 {
		n := d.count(2)
		if d.err != nil {
			return d.err
		}
		e.Headers = make([]event.Header, 0, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			e.Headers = append(e.Headers, event.Header{Name: d.str(), Value: d.str()})
		}
	}
	if mask&fBody != 0 {
		e.Body = d.bytes()
	}
	if mask&fBodyBytes != 0 {
		e.BodyBytes = d.varint()
	}
	if mask&fStatus != 0 {
		e.Status = int(d.varint())
	}
	if mask&fLatency != 0 {
		e.Latency = time.Duration(d.varint())
	}
	if mask&fStream != 0 {
		e.Stream = d.str()
	}
	if mask&fEventID != 0 {
		e.EventID = d.str()
	}
	if mask&fEventName != 0 {
		e.EventName = d.str()
	}
	if mask&fData != 0 {
		e.Data = d.bytes()
	}
	if mask&fPlugin != 0 {
		e.Plugin = d.str()
	}
	if mask&fDecision != 0 {
		e.Decision = d.str()
	}
	if mask&fMessage != 0 {
		e.Message = d.str()
	}
	if mask&fCodedHeaders != 0 {
		n := d.count(2)
		if d.err != nil {
			return d.err
		}
		e.Headers = make([]event.Header, 0, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			var h event.Header
			switch k := d.uvarint(); {
			case k == 0:
				h.Name = d.str()
			case k <= uint64(len(headerNames)):
				h.Name = headerNames[k-1]
			default:
				d.err = fmt.Errorf("header name index %d unknown", k)
			}
			switch v := d.uvarint(); {
			case d.err != nil:
			case v == 0:
				h.Value = e.RequestID
			case v-1 > uint64(len(d.b)):
				d.err = errTruncated
			default:
				h.Value = string(d.b[:v-1])
				d.b = d.b[v-1:]
			}
			e.Headers = append(e.Headers, h)
		}
	}
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%d trailing bytes after event", len(d.b))
	}
	return nil
}

// sessionMeta is the "m" record of a session.
type sessionMeta struct {
	Start        int64 // unix nanos of the first event
	LastActivity int64 // unix nanos of the latest event
	LastSeq      uint64
	Events       uint64 // events committed
	Bytes        uint64 // its committed events, each as its own key + v1 value (eventBytes)
	Ended        bool
	Route        string
}

const metaV1 = 1

func appendMeta(dst []byte, m *sessionMeta) []byte {
	dst = append(dst, metaV1)
	dst = binary.AppendVarint(dst, m.Start)
	dst = binary.AppendVarint(dst, m.LastActivity)
	dst = binary.AppendUvarint(dst, m.LastSeq)
	dst = binary.AppendUvarint(dst, m.Events)
	dst = binary.AppendUvarint(dst, m.Bytes)
	var flags byte
	if m.Ended {
		flags |= 1
	}
	dst = append(dst, flags)
	dst = binary.AppendUvarint(dst, uint64(len(m.Route)))
	return append(dst, m.Route...)
}

func decodeMeta(v []byte) (sessionMeta, error) {
	var m sessionMeta
	if len(v) < 1 || v[0] != metaV1 {
		return m, errors.New("session metadata: unknown version")
	}
	d := decoder{b: v[1:]}
	m.Start = d.varint()
	m.LastActivity = d.varint()
	m.LastSeq = d.uvarint()
	m.Events = d.uvarint()
	m.Bytes = d.uvarint()
	if d.err == nil {
		if len(d.b) < 1 {
			d.err = errTruncated
		} else {
			m.Ended = d.b[0]&1 != 0
			d.b = d.b[1:]
		}
	}
	m.Route = d.str()
	if d.err != nil {
		return m, fmt.Errorf("session metadata: %w", d.err)
	}
	return m, nil
}

// encodingRun is the first byte of a value holding a run: consecutive
// events of one session, written by one batch under the key of the first
// (seq n, n+1, ...). After the byte come a uvarint count (≥ 2) and then
// each event's v1 value, prefixed by its uvarint length. One key per
// session per batch instead of one per event: a memtable insert costs more
// than encoding the event, and most of it is the skiplist search, which a
// run pays once.
const encodingRun = 2

// Bounds of a run, so that a reader never loads an outsized value to reach
// one event. An event larger than maxRunBytes is written alone.
const (
	maxRunEvents = 64
	maxRunBytes  = 32 << 10
)

// appendRun appends the run value of the v1 values encs[i] (len ≥ 2).
func appendRun(dst []byte, encs [][]byte) []byte {
	dst = append(dst, encodingRun)
	dst = binary.AppendUvarint(dst, uint64(len(encs)))
	for _, v := range encs {
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

// forEachEncoded calls fn with the v1 value of each event a stored value
// holds, in seq order: v itself, or each member of a run. i is the
// event's offset from the key's seq. It never panics on bad input and
// returns fn's first error.
func forEachEncoded(v []byte, fn func(i int, enc []byte) error) error {
	if len(v) == 0 {
		return errTruncated
	}
	if v[0] != encodingRun {
		return fn(0, v)
	}
	d := decoder{b: v[1:]}
	n := d.uvarint()
	if d.err != nil {
		return d.err
	}
	// Each member takes at least three bytes (length, version, type).
	if n < 2 || n > uint64(len(d.b))/3 {
		return fmt.Errorf("event run of %d events in %d bytes", n, len(d.b))
	}
	for i := 0; i < int(n); i++ {
		enc := d.view()
		if d.err != nil {
			return d.err
		}
		if err := fn(i, enc); err != nil {
			return err
		}
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%d trailing bytes after event run", len(d.b))
	}
	return nil
}
