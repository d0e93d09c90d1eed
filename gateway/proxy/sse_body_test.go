package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/http/httputil"
	"testing"
	"testing/iotest"
)

// readBody decodes raw through an upstreamBody whose connection reads
// return one byte each (step 1) or as much as asked (step 0), with the
// first pre bytes handed over as already buffered.
func readBody(raw string, chunked bool, pre, step int) (string, *upstreamBody, error) {
	pre = min(pre, len(raw))
	var r io.Reader = bytes.NewReader([]byte(raw[pre:]))
	if step == 1 {
		r = iotest.OneByteReader(r)
	}
	u := &upstreamBody{conn: r, chunked: chunked}
	if pre > 0 {
		b := []byte(raw[:pre])
		u.pre = &b
	}
	var out []byte
	buf := make([]byte, 7)
	for {
		n, err := u.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return string(out), u, nil
		}
		if err != nil {
			return string(out), u, err
		}
	}
}

func TestUpstreamBodyChunked(t *testing.T) {
	for _, tc := range []struct {
		name, raw, want string
		extra           bool
		err             error
	}{
		{"one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello", false, nil},
		{"several", "3\r\nabc\r\n1\r\nd\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n", "abcd0123456789abcdef", false, nil},
		{"upper hex, extension", "A;name=val\r\n0123456789\r\n0;x\r\n\r\n", "0123456789", false, nil},
		{"bare LF", "2\nhi\n0\n\n", "hi", false, nil},
		{"trailer", "2\r\nhi\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n", "hi", false, nil},
		{"bytes after the end", "2\r\nhi\r\n0\r\n\r\nHTTP/1.1", "hi", true, nil},
		{"ends inside data", "5\r\nhel", "hel", false, io.ErrUnexpectedEOF},
		{"ends before last chunk", "2\r\nhi\r\n", "hi", false, io.ErrUnexpectedEOF},
		{"bad size", "zz\r\nhi\r\n0\r\n\r\n", "", false, errBadChunk},
		{"empty size line", "\r\nhi\r\n", "", false, errBadChunk},
		{"no CRLF after data", "2\r\nhiX\r\n0\r\n\r\n", "hi", false, errBadChunk},
		{"size too large", "1000000000000000\r\n", "", false, errBadChunk},
	} {
		for _, pre := range []int{0, 3, len(tc.raw)} {
			for _, step := range []int{0, 1} {
				got, u, err := readBody(tc.raw, true, pre, step)
				if !errors.Is(err, tc.err) {
					t.Errorf("%s (pre %d, step %d): err %v, want %v", tc.name, pre, step, err, tc.err)
					continue
				}
				// Bytes after the end are seen only when they arrive
				// with it.
				if err == nil && (got != tc.want || (step == 0 && u.extra != tc.extra)) {
					t.Errorf("%s (pre %d, step %d): %q extra=%v, want %q extra=%v", tc.name, pre, step, got, u.extra, tc.want, tc.extra)
				}
				if err != nil && !bytes.HasPrefix([]byte(tc.want), []byte(got)) {
					t.Errorf("%s (pre %d, step %d): %q before the error, want a prefix of %q", tc.name, pre, step, got, tc.want)
				}
			}
		}
	}
}

func TestUpstreamBodyUntilClose(t *testing.T) {
	raw := "data: a\n\ndata: b\n\n"
	for _, pre := range []int{0, 4} {
		got, _, err := readBody(raw, false, pre, 1)
		if err != nil || got != raw {
			t.Fatalf("pre %d: %q, %v", pre, got, err)
		}
	}
}

// FuzzUpstreamBody checks the in-place decoder against net/http's chunked
// reader on the data both accept.
func FuzzUpstreamBody(f *testing.F) {
	f.Add("5\r\nhello\r\n0\r\n\r\n", 0)
	f.Add("3;x=y\r\nabc\r\n1\r\nd\r\n0\r\nT: v\r\n\r\n", 2)
	f.Add("2\nhi\n0\n\n", 1)
	f.Fuzz(func(t *testing.T, raw string, pre int) {
		if pre < 0 {
			pre = -pre
		}
		got, _, err := readBody(raw, true, pre%(len(raw)+1), 1)
		want, werr := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader([]byte(raw))))
		if err == nil && werr == nil && got != string(want) {
			t.Fatalf("decoded %q, net/http %q", got, want)
		}
	})
}
