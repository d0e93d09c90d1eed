package sdk

import "bytes"

// Event is one server-sent event in wire form, as the host puts it in the
// response body buffer: its field lines, comments and the blank line that
// ends it, with the upstream's line endings. Reading never changes it;
// edits rewrite only the lines they touch, so an event you do not change
// stays byte-identical.
type Event struct {
	raw   []byte
	lines []line
	// inline backs lines for a typical event, so that parsing one costs a
	// single allocation (each growth of lines was a Go allocation of
	// thousands of guest instructions).
	inline [8]line
}

// line is one line of raw: [start, end) is its content, next is where the
// following line starts (past LF, CR or CRLF).
type line struct{ start, end, next int }

// ParseEvent reads the lines of one event. It does not copy raw.
func ParseEvent(raw []byte) *Event {
	e := &Event{raw: raw}
	e.lines = e.inline[:0]
	e.split()
	return e
}

func (e *Event) split() {
	e.lines = e.lines[:0]
	for i := 0; i < len(e.raw); {
		j := i
		for j < len(e.raw) && e.raw[j] != '\n' && e.raw[j] != '\r' {
			j++
		}
		next := j
		if next < len(e.raw) {
			if e.raw[next] == '\r' && next+1 < len(e.raw) && e.raw[next+1] == '\n' {
				next += 2
			} else {
				next++
			}
		}
		e.lines = append(e.lines, line{i, j, next})
		i = next
	}
}

// field splits a line into name and value (one leading space of the value
// dropped). ok is false for comments and blank lines.
func (e *Event) field(l line) (name, value []byte, valueStart int, ok bool) {
	c := e.raw[l.start:l.end]
	if len(c) == 0 || c[0] == ':' {
		return nil, nil, 0, false
	}
	i := bytes.IndexByte(c, ':')
	if i < 0 {
		return c, nil, l.end, true
	}
	v := i + 1
	if v < len(c) && c[v] == ' ' {
		v++
	}
	return c[:i], c[v:], l.start + v, true
}

// Bytes returns the event's wire bytes.
func (e *Event) Bytes() []byte { return e.raw }

// Field returns the value of the last field called name.
func (e *Event) Field(name string) (string, bool) {
	var val []byte
	found := false
	for _, l := range e.lines {
		if n, v, _, ok := e.field(l); ok && string(n) == name {
			val, found = v, true
		}
	}
	return string(val), found
}

// Name is the event type: the last "event" field, or "" (which SSE
// clients treat as "message").
func (e *Event) Name() string { v, _ := e.Field("event"); return v }

// ID is the last "id" field.
func (e *Event) ID() (string, bool) { return e.Field("id") }

// Data is the event's data lines joined with "\n".
func (e *Event) Data() []byte {
	var out []byte
	first := true
	for _, l := range e.lines {
		if n, v, _, ok := e.field(l); ok && string(n) == "data" {
			if !first {
				out = append(out, '\n')
			}
			out = append(out, v...)
			first = false
		}
	}
	return out
}

// MapData calls fn on the value of every data line, in place: fn may
// change bytes but not the length. Everything else stays as it was.
func (e *Event) MapData(fn func(value []byte)) {
	for _, l := range e.lines {
		if n, v, _, ok := e.field(l); ok && string(n) == "data" {
			fn(v)
		}
	}
}

// SetData replaces the event's data lines with data split at "\n", placed
// where the first data line was (before the terminating blank line when
// there was none), with the event's own line ending.
func (e *Event) SetData(data []byte) {
	e.replace("data", bytes.Split(data, []byte{'\n'}))
}

// SetField replaces every field called name with one "name: value" line
// (appended before the blank line when absent). A value with a line break
// would change the event's framing and is cut at the first one.
func (e *Event) SetField(name, value string) {
	if i := bytes.IndexAny([]byte(value), "\r\n"); i >= 0 {
		value = value[:i]
	}
	e.replace(name, [][]byte{[]byte(value)})
}

// DelField removes every field called name.
func (e *Event) DelField(name string) { e.replace(name, nil) }

func (e *Event) eol() []byte {
	for _, l := range e.lines {
		if l.next > l.end {
			return e.raw[l.end:l.next]
		}
	}
	return []byte{'\n'}
}

func (e *Event) replace(name string, values [][]byte) {
	eol := e.eol()
	out := make([]byte, 0, len(e.raw)+len(name)+16)
	emit := func() {
		for _, v := range values {
			out = append(out, name...)
			out = append(out, ':', ' ')
			out = append(out, v...)
			out = append(out, eol...)
		}
		values = nil
	}
	for i, l := range e.lines {
		n, _, _, ok := e.field(l)
		switch {
		case ok && string(n) == name:
			emit()
			continue
		case l.start == l.end && i == len(e.lines)-1 || l.start == l.end && l.next == len(e.raw):
			emit() // before the terminating blank line
		}
		out = append(out, e.raw[l.start:l.next]...)
	}
	if values != nil {
		emit()
		out = append(out, eol...)
	}
	e.raw = out
	e.split()
}
