package sse

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// got is an Event copied out of the parser (whose buffers are reused).
type got struct {
	Raw, Data, ID, Last, Name string
	HasID, Dispatch           bool
	Retry                     int64
}

func (g got) String() string {
	return fmt.Sprintf("{raw=%q data=%q id=%q has=%v last=%q name=%q retry=%d dispatch=%v}",
		g.Raw, g.Data, g.ID, g.HasID, g.Last, g.Name, g.Retry, g.Dispatch)
}

func snapshot(e *Event) got {
	return got{Raw: string(e.Raw), Data: string(e.Data), ID: e.ID, Last: e.LastEventID, Name: e.Name,
		HasID: e.HasID, Dispatch: e.Dispatchable(), Retry: e.Retry}
}

func parseAll(r io.Reader, max int) ([]got, error) {
	p := NewParser(r, max)
	var out []got
	for {
		e, err := p.Next()
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return out, err
		}
		out = append(out, snapshot(e))
	}
}

// chunkReader returns its data in reads of the given sizes, cycling.
type chunkReader struct {
	data  []byte
	sizes []int
	i     int
}

func (c *chunkReader) Read(b []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(c.sizes) > 0 {
		n = c.sizes[c.i%len(c.sizes)]
		c.i++
	}
	n = min(n, len(b), len(c.data))
	copy(b, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// ev is the expected form of one dispatchable block in the spec table.
func ev(raw, data string) got {
	return got{Raw: raw, Data: data, Dispatch: true, Retry: -1}
}

func TestParserSpec(t *testing.T) {
	withID := func(g got, id, last string) got { g.ID, g.HasID, g.Last = id, true, last; return g }
	withLast := func(g got, last string) got { g.Last = last; return g }
	named := func(g got, name string) got { g.Name = name; return g }
	quiet := func(raw string) got { return got{Raw: raw, Retry: -1} }
	retry := func(g got, ms int64) got { g.Retry = ms; return g }

	tests := []struct {
		name    string
		in      string
		want    []got
		wantErr error
	}{
		{"empty stream", "", nil, nil},
		{"one event", "data: hello\n\n", []got{ev("data: hello\n\n", "hello")}, nil},
		{"multi-line data joined with LF", "data: a\ndata: b\ndata: c\n\n", []got{ev("data: a\ndata: b\ndata: c\n\n", "a\nb\nc")}, nil},
		{"event name", "event: shout\ndata: x\n\n", []got{named(ev("event: shout\ndata: x\n\n", "x"), "shout")}, nil},
		{"last event field wins", "event: a\nevent: b\ndata: x\n\n", []got{named(ev("event: a\nevent: b\ndata: x\n\n", "x"), "b")}, nil},
		{"empty event name is message", "event\ndata: x\n\n", []got{ev("event\ndata: x\n\n", "x")}, nil},
		{"id", "id: 7\ndata: x\n\n", []got{withID(ev("id: 7\ndata: x\n\n", "x"), "7", "7")}, nil},
		{"id with NUL ignored", "id: a\x00b\ndata: x\n\n", []got{ev("id: a\x00b\ndata: x\n\n", "x")}, nil},
		{"id persists across events", "id: 1\ndata: a\n\ndata: b\n\n",
			[]got{withID(ev("id: 1\ndata: a\n\n", "a"), "1", "1"), withLast(ev("data: b\n\n", "b"), "1")}, nil},
		{"empty id resets", "id: 1\ndata: a\n\nid\ndata: b\n\n",
			[]got{withID(ev("id: 1\ndata: a\n\n", "a"), "1", "1"), withID(ev("id\ndata: b\n\n", "b"), "", "")}, nil},
		{"id-only block not dispatchable", "id: 5\n\n", []got{withID(quiet("id: 5\n\n"), "5", "5")}, nil},
		{"retry", "retry: 1500\n\n", []got{retry(quiet("retry: 1500\n\n"), 1500)}, nil},
		{"retry with non-digit ignored", "retry: 15x\n\n", []got{quiet("retry: 15x\n\n")}, nil},
		{"retry negative ignored", "retry: -5\n\n", []got{quiet("retry: -5\n\n")}, nil},
		{"retry empty ignored", "retry:\n\n", []got{quiet("retry:\n\n")}, nil},
		{"retry overflow ignored", "retry: 99999999999999999999\n\n", []got{quiet("retry: 99999999999999999999\n\n")}, nil},
		{"retry with data", "retry: 10\ndata: x\n\n", []got{retry(ev("retry: 10\ndata: x\n\n", "x"), 10)}, nil},
		{"comment only", ": keep-alive\n\n", []got{quiet(": keep-alive\n\n")}, nil},
		{"comment between fields", "data: a\n: note\ndata: b\n\n", []got{ev("data: a\n: note\ndata: b\n\n", "a\nb")}, nil},
		{"CRLF", "data: a\r\ndata: b\r\n\r\n", []got{ev("data: a\r\ndata: b\r\n\r\n", "a\nb")}, nil},
		{"CR", "data: a\rdata: b\r\r", []got{ev("data: a\rdata: b\r\r", "a\nb")}, nil},
		{"mixed line ends", "data: a\r\n\ndata: b\r\r\ndata: c\n\r",
			[]got{ev("data: a\r\n\n", "a"), ev("data: b\r\r\n", "b"), ev("data: c\n\r", "c")}, nil},
		{"BOM at start skipped", "\xEF\xBB\xBFdata: x\n\n", []got{ev("data: x\n\n", "x")}, nil},
		{"BOM later is part of the field name", "data: a\n\n\xEF\xBB\xBFdata: x\n\n",
			[]got{ev("data: a\n\n", "a"), quiet("\xEF\xBB\xBFdata: x\n\n")}, nil},
		{"only one BOM skipped", "\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n", []got{quiet("\xEF\xBB\xBFdata: x\n\n")}, nil},
		{"field without colon", "data\n\n", []got{ev("data\n\n", "")}, nil},
		{"two empty data lines", "data\ndata\n\n", []got{ev("data\ndata\n\n", "\n")}, nil},
		{"no space after colon", "data:x\n\n", []got{ev("data:x\n\n", "x")}, nil},
		{"only one space dropped", "data:  x \n\n", []got{ev("data:  x \n\n", " x ")}, nil},
		{"colon in value", "data: a:b\n\n", []got{ev("data: a:b\n\n", "a:b")}, nil},
		{"unknown field ignored", "foo: bar\ndata: x\n\n", []got{ev("foo: bar\ndata: x\n\n", "x")}, nil},
		{"leading space makes another field", " data: x\n\n", []got{quiet(" data: x\n\n")}, nil},
		{"field names are case-sensitive", "Data: x\n\n", []got{quiet("Data: x\n\n")}, nil},
		{"stray blank lines are blocks", "\n\ndata: x\n\n", []got{quiet("\n"), quiet("\n"), ev("data: x\n\n", "x")}, nil},
		{"invalid UTF-8 passes through", "data: \xff\xfe\n\n", []got{ev("data: \xff\xfe\n\n", "\xff\xfe")}, nil},
		{"partial last event", "data: a\n\ndata: b\n", []got{ev("data: a\n\n", "a")}, io.ErrUnexpectedEOF},
		{"partial last line", "data: a\n\ndata", []got{ev("data: a\n\n", "a")}, io.ErrUnexpectedEOF},
		{"CR at end of stream ends the event", "data: a\r\r", []got{ev("data: a\r\r", "a")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := parseAll(strings.NewReader(tt.in), 0)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if fmt.Sprintf("%v", out) != fmt.Sprintf("%v", tt.want) {
				t.Fatalf("events\n got %v\nwant %v", out, tt.want)
			}
			// Every chunking yields the same fields and the same bytes.
			for _, sizes := range [][]int{{1}, {2}, {3}, {1, 5}, {7, 1, 2}} {
				cout, cerr := parseAll(&chunkReader{data: []byte(tt.in), sizes: sizes}, 0)
				if !errors.Is(cerr, tt.wantErr) {
					t.Fatalf("chunks %v: error = %v, want %v", sizes, cerr, tt.wantErr)
				}
				if a, b := normalize(cout), normalize(out); a != b {
					t.Fatalf("chunks %v:\n got %s\nwant %s", sizes, a, b)
				}
			}
			// Parse of every Raw gives back the event.
			for _, g := range out {
				e, err := Parse([]byte(g.Raw))
				if err != nil {
					t.Fatalf("Parse(%q): %v", g.Raw, err)
				}
				pg := snapshot(&e)
				pg.Last, g.Last = "", ""
				if pg != g {
					t.Fatalf("Parse(%q) = %+v, want %+v", g.Raw, pg, g)
				}
			}
		})
	}
}

// normalize renders events for comparison across chunkings: the fields of
// every block that is more than a bare line end, and all Raw concatenated.
func normalize(evs []got) string {
	var fields, raw strings.Builder
	for _, g := range evs {
		raw.WriteString(g.Raw)
		if g.Raw == "\n" || g.Raw == "\r" || g.Raw == "\r\n" {
			continue
		}
		g.Raw = ""
		fmt.Fprintf(&fields, "%v\n", g)
	}
	return fmt.Sprintf("%s raw=%q", fields.String(), raw.String())
}

func TestParserCRLFSplitAcrossReads(t *testing.T) {
	// The CR ending the block is the last byte of a read: the block is
	// returned at once and the LF comes back as a block of its own.
	r := &chunkReader{data: []byte("data: a\r\r\ndata: b\r\n\r\n"), sizes: []int{9, 100}}
	out, err := parseAll(r, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []got{ev("data: a\r\r", "a"), {Raw: "\n", Retry: -1}, ev("data: b\r\n\r\n", "b")}
	if fmt.Sprintf("%v", out) != fmt.Sprintf("%v", want) {
		t.Fatalf("got %v\nwant %v", out, want)
	}
	// Inside a block the split CRLF is one line end.
	r = &chunkReader{data: []byte("data: a\r\ndata: b\n\n"), sizes: []int{8, 100}}
	out, err = parseAll(r, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].Data != "a\nb" || out[0].Raw != "data: a\r\ndata: b\n\n" {
		t.Fatalf("got %v", out)
	}
}

func TestParserBOMSplitAcrossReads(t *testing.T) {
	out, err := parseAll(iotest.OneByteReader(strings.NewReader("\xEF\xBB\xBFdata: x\n\n")), 0)
	if err != nil || len(out) != 1 || out[0].Raw != "data: x\n\n" {
		t.Fatalf("got %v, %v", out, err)
	}
	// A BOM prefix that is not a BOM stays.
	out, err = parseAll(iotest.OneByteReader(strings.NewReader("\xEF\xBBdata: x\n\n")), 0)
	if err != nil || len(out) != 1 || out[0].Raw != "\xEF\xBBdata: x\n\n" || out[0].Dispatch {
		t.Fatalf("got %v, %v", out, err)
	}
}

func TestParserSizeLimit(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		max     int
		wantN   int
		wantErr error
	}{
		{"exactly at the limit", "data: 0123\n\n", 12, 1, nil},
		{"one over the limit", "data: 0123\n\n", 11, 0, ErrEventTooLarge},
		{"CRLF end: the final LF is not counted", "data: 0123\r\n\r\n", 13, 1, nil},
		{"CRLF end one over", "data: 0123\r\n\r\n", 12, 0, ErrEventTooLarge},
		{"limit is per event", "data: 0123\n\ndata: 4567\n\ndata: 89\n\n", 12, 3, nil},
		{"event after small ones", "data: a\n\ndata: 0123456789\n\n", 12, 1, ErrEventTooLarge},
		{"unterminated over the limit", "data: 0123456789", 12, 0, ErrEventTooLarge},
		{"unterminated under the limit", "data: 0123", 12, 0, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, sizes := range [][]int{{1000}, {1}, {3}} {
				p := NewParser(&chunkReader{data: []byte(tt.in), sizes: sizes}, tt.max)
				n := 0
				var err error
				for {
					var e *Event
					if e, err = p.Next(); err != nil {
						break
					}
					if string(e.Raw) != "\n" { // a CRLF split across reads
						n++
					}
					if len(e.Raw) > tt.max+1 {
						t.Fatalf("Raw %q longer than the limit", e.Raw)
					}
				}
				if err == io.EOF {
					err = nil
				}
				if n != tt.wantN || !errors.Is(err, tt.wantErr) {
					t.Fatalf("chunks %v: %d events, %v; want %d, %v", sizes, n, err, tt.wantN, tt.wantErr)
				}
				if _, again := p.Next(); err != nil && again != err {
					t.Fatalf("error not sticky: %v then %v", err, again)
				}
			}
		})
	}
}

// countingReader is an endless stream of one byte that counts what was read.
type countingReader struct {
	b    byte
	read int
}

func (c *countingReader) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = c.b
	}
	c.read += len(b)
	return len(b), nil
}

func TestParserBoundedMemory(t *testing.T) {
	const max = 100_000
	// An endless line fails after reading no more than the limit plus one
	// byte: the parser never holds more than that.
	r := &countingReader{b: 'x'}
	p := NewParser(r, max)
	if _, err := p.Next(); !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("endless line: err = %v", err)
	}
	if r.read > max+1 || len(p.buf) > max+1 {
		t.Fatalf("endless line: read %d bytes, buffer %d, for a %d limit", r.read, len(p.buf), max)
	}
	// An endless run of data lines: the joined data stays bounded too.
	p = NewParser(&linesReader{line: "data: 0123456789\n"}, max)
	if _, err := p.Next(); !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("endless data lines: err = %v", err)
	}
	if len(p.buf) > max+1 || cap(p.data) > max {
		t.Fatalf("endless data lines: buffer %d, data %d, for a %d limit", len(p.buf), cap(p.data), max)
	}
}

// linesReader repeats line forever.
type linesReader struct {
	line string
	off  int
}

func (l *linesReader) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		c := copy(b[n:], l.line[l.off:])
		n += c
		l.off = (l.off + c) % len(l.line)
	}
	return n, nil
}

func TestParserShrinksAfterLargeEvent(t *testing.T) {
	big := "data: " + strings.Repeat("x", 200_000) + "\n\n"
	in := big + "data: a\n\ndata: b\ndata: c\n\n"
	p := NewParser(strings.NewReader(in), 1<<20)
	e, err := p.Next()
	if err != nil || len(e.Data) != 200_000 {
		t.Fatalf("big event: %v", err)
	}
	e, err = p.Next()
	if err != nil || string(e.Data) != "a" {
		t.Fatalf("after big: %q %v", e.Data, err)
	}
	if len(p.buf) != DefaultBufferSize {
		t.Fatalf("buffer stayed at %d bytes", len(p.buf))
	}
	if e, err = p.Next(); err != nil || string(e.Data) != "b\nc" {
		t.Fatalf("third: %v", err)
	}
}

func TestParserReaderError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("data: a\n\ndata: b"), iotest.ErrReader(boom))
	out, err := parseAll(r, 0)
	if !errors.Is(err, boom) || len(out) != 1 {
		t.Fatalf("got %v, %v", out, err)
	}
	// Data and error in one Read: the data is parsed first.
	out, err = parseAll(iotest.DataErrReader(strings.NewReader("data: a\n\n")), 0)
	if err != nil || len(out) != 1 {
		t.Fatalf("got %v, %v", out, err)
	}
}

func TestParserIDsStayValid(t *testing.T) {
	var in strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&in, "id: %d\nevent: e%d\ndata: x\n\n", i, i%3)
	}
	p := NewParser(iotest.HalfReader(strings.NewReader(in.String())), 0)
	var ids, names []string
	for {
		e, err := p.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ids, names = append(ids, e.ID), append(names, e.Name)
	}
	for i := range 2000 {
		if ids[i] != strconv.Itoa(i) || names[i] != "e"+strconv.Itoa(i%3) {
			t.Fatalf("event %d kept id %q name %q", i, ids[i], names[i])
		}
	}
}

func TestParserReset(t *testing.T) {
	p := NewParser(strings.NewReader("id: 1\ndata: a\n\ndata: partial"), 0)
	if _, err := p.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("err = %v", err)
	}
	p.Reset(nil) // as when pooled
	if _, err := p.Next(); err == nil {
		t.Fatal("Next without a reader succeeded")
	}
	p.Reset(strings.NewReader("\xEF\xBB\xBFdata: b\n\n"))
	e, err := p.Next()
	if err != nil || string(e.Raw) != "data: b\n\n" || e.LastEventID != "" {
		t.Fatalf("after Reset: %+v %v", e, err)
	}
}

func TestParserNoAllocsPerEvent(t *testing.T) {
	var stream []byte
	for i := range 64 {
		stream = AppendEvent(stream, strconv.Itoa(1000+i), "update", []byte("line one\nline two"))
		stream = AppendComment(stream, "hb")
	}
	p := NewParser(&linesReader{line: string(stream)}, 0)
	for range 1000 { // warm up buffers
		p.Next()
	}
	allocs := testing.AllocsPerRun(10, func() {
		for range 1000 {
			if _, err := p.Next(); err != nil {
				t.Fatal(err)
			}
		}
	})
	// Ids change every event: they are carved from a shared chunk, so
	// there is one allocation per arenaSize bytes of ids, not per event.
	if per := allocs / 1000; per > 0.05 {
		t.Fatalf("%.3f allocations per event", per)
	}
}

func TestParse(t *testing.T) {
	e, err := Parse([]byte("id: 9\nevent: ping\ndata: a\ndata: b\nretry: 20\n\n"))
	if err != nil || e.ID != "9" || !e.HasID || e.LastEventID != "9" || e.Name != "ping" || string(e.Data) != "a\nb" || e.Retry != 20 || !e.Dispatchable() {
		t.Fatalf("got %+v, %v", e, err)
	}
	for _, tt := range []struct {
		in      string
		wantErr error
	}{
		{"data: a\n", io.ErrUnexpectedEOF},
		{"data: a", io.ErrUnexpectedEOF},
		{"", io.ErrUnexpectedEOF},
		{"data: a\n\ndata: b\n\n", nil},
		{"data: a\n\n\n", nil},
	} {
		_, err := Parse([]byte(tt.in))
		if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
			t.Errorf("Parse(%q) err = %v, want %v", tt.in, err, tt.wantErr)
		}
	}
}

func TestAppendEvent(t *testing.T) {
	tests := []struct {
		id, name, data string
		want           string
	}{
		{"", "", "hello", "data: hello\n\n"},
		{"1", "", "hello", "id: 1\ndata: hello\n\n"},
		{"1", "shout", "hello", "id: 1\nevent: shout\ndata: hello\n\n"},
		{"", "", "a\nb\r\nc\rd", "data: a\ndata: b\ndata: c\ndata: d\n\n"},
		{"", "", "", "data\n\n"},
		{"", "", "a\n", "data: a\ndata\n\n"},
		{"", "", " lead", "data:  lead\n\n"},
		{"a\nb", "x\r\ny", "z", "id: ab\nevent: xy\ndata: z\n\n"},
		{"a\x00b", "n\x00m", "z", "id: ab\nevent: n\x00m\ndata: z\n\n"},
	}
	for _, tt := range tests {
		got := string(AppendEvent([]byte("pre"), tt.id, tt.name, []byte(tt.data)))
		if got != "pre"+tt.want {
			t.Errorf("AppendEvent(%q, %q, %q) = %q, want %q", tt.id, tt.name, tt.data, got, "pre"+tt.want)
			continue
		}
		e, err := Parse([]byte(tt.want))
		wantData := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(tt.data)
		if err != nil || string(e.Data) != wantData || !e.Dispatchable() {
			t.Errorf("round trip of %q: %+v %v", tt.data, e, err)
		}
	}
}

func TestAppendComment(t *testing.T) {
	for in, want := range map[string]string{
		"hb":        ": hb\n\n",
		"":          ":\n\n",
		"a\nb\r\nc": ": a\n: b\n: c\n\n",
	} {
		got := string(AppendComment(nil, in))
		if got != want {
			t.Errorf("AppendComment(%q) = %q, want %q", in, got, want)
		}
		e, err := Parse([]byte(got))
		if err != nil || e.Dispatchable() {
			t.Errorf("comment %q parsed as %+v %v", got, e, err)
		}
	}
}
