package sse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

var fuzzSeeds = []string{
	"",
	"data: hello\n\n",
	"data: a\ndata: b\n\n",
	"event: shout\ndata: x\nid: 1\nretry: 10\n\n",
	"id: a\x00b\ndata: x\n\n",
	"id\ndata: b\n\n",
	"retry: 99999999999999999999\n\n",
	": keep-alive\n\n",
	"data: a\r\ndata: b\r\n\r\n",
	"data: a\rdata: b\r\r",
	"data: a\r\n\ndata: b\r\r\ndata: c\n\r",
	"\xEF\xBB\xBFdata: x\n\n",
	"\xEF\xBB",
	"data\ndata\n\n",
	"data:  x \n\n",
	"\n\n\r\r\n\r\n",
	"data: a\n\ndata: partial",
	"data: 0123456789012345678901234567890123456789\n\n",
}

// FuzzParser feeds arbitrary bytes in arbitrary read sizes. The parser must
// not panic, must stay within its size limit, and must find the same events
// and the same bytes whatever the chunking; every Raw must parse back to its
// event.
func FuzzParser(f *testing.F) {
	for i, s := range fuzzSeeds {
		f.Add([]byte(s), []byte{1, 2, 3}, uint16(i*7))
		f.Add([]byte(s), []byte{}, uint16(0))
	}
	f.Fuzz(func(t *testing.T, in, chunks []byte, limit uint16) {
		max := 16 + int(limit%512)
		sizes := make([]int, len(chunks))
		for i, c := range chunks {
			sizes[i] = 1 + int(c%31)
		}
		whole, wholeErr := fuzzParse(t, bytes.NewReader(in), max)
		chunked, chunkedErr := fuzzParse(t, &chunkReader{data: in, sizes: sizes}, max)
		if errKind(wholeErr) != errKind(chunkedErr) {
			t.Fatalf("whole: %v, chunked %v: %v", wholeErr, sizes, chunkedErr)
		}
		if a, b := normalize(whole), normalize(chunked); a != b {
			t.Fatalf("whole:\n%s\nchunked %v:\n%s", a, sizes, b)
		}
		if wholeErr == nil {
			var raw strings.Builder
			for _, g := range whole {
				raw.WriteString(g.Raw)
			}
			if want := strings.TrimPrefix(string(in), "\xEF\xBB\xBF"); raw.String() != want {
				t.Fatalf("Raw concatenation %q, stream %q", raw.String(), want)
			}
		}
	})
}

func errKind(err error) string {
	switch {
	case err == nil:
		return "nil"
	case errors.Is(err, ErrEventTooLarge):
		return "too large"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	}
	return err.Error()
}

func fuzzParse(t *testing.T, r io.Reader, max int) ([]got, error) {
	p := NewParser(r, max)
	var out []got
	for {
		e, err := p.Next()
		if len(p.buf) > max+1 && len(p.buf) > 16 || cap(p.data) > max {
			t.Fatalf("buffers %d/%d over the limit %d", len(p.buf), cap(p.data), max)
		}
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return out, err
		}
		if len(e.Raw) > max && !(len(e.Raw) == max+1 && bytes.HasSuffix(e.Raw, []byte("\r\n"))) {
			t.Fatalf("Raw of %d bytes over the limit %d: %q", len(e.Raw), max, e.Raw)
		}
		g := snapshot(e)
		pe, perr := Parse(e.Raw)
		if perr != nil {
			t.Fatalf("Parse(%q): %v", e.Raw, perr)
		}
		pg := snapshot(&pe)
		pg.Last = g.Last
		if pg != g {
			t.Fatalf("Parse(%q) = %v, Next gave %v", e.Raw, pg, g)
		}
		out = append(out, g)
	}
}

// FuzzAppendEvent checks that whatever goes in, AppendEvent writes exactly
// one event that parses back to the same data (line ends normalized to LF).
func FuzzAppendEvent(f *testing.F) {
	f.Add("1", "shout", []byte("a\nb"))
	f.Add("a\r\nb", "x\x00", []byte("\r\r\n"))
	f.Fuzz(func(t *testing.T, id, name string, data []byte) {
		raw := AppendEvent(nil, id, name, data)
		e, err := Parse(raw)
		if err != nil {
			t.Fatalf("Parse(%q): %v", raw, err)
		}
		want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(string(data))
		if string(e.Data) != want || !e.Dispatchable() {
			t.Fatalf("data %q came back as %q", want, e.Data)
		}
		wantID := strings.NewReplacer("\r", "", "\n", "", "\x00", "").Replace(id)
		if e.ID != wantID || e.HasID != (wantID != "") {
			t.Fatalf("id %q came back as %q (%v)", wantID, e.ID, e.HasID)
		}
		wantName := strings.NewReplacer("\r", "", "\n", "").Replace(name)
		if e.Name != wantName {
			t.Fatalf("name %q came back as %q", wantName, e.Name)
		}
	})
}
