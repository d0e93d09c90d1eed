package sse

import "strings"

// AppendEvent appends one event in wire form to dst and returns the extended
// slice: an "id" line if id is not empty, an "event" line if name is not
// empty (both after the removals below), one "data" line per line of data (data split at LF, CR and CRLF, so
// that a parser joins them back with LF), and the blank line. Empty or nil
// data still writes one "data" line, so the event is dispatched with empty
// data.
//
// A line end inside id or name would end the field early and inject other
// fields, so CR and LF are removed from both; NUL is removed from id too,
// because a client ignores an id containing it. Nothing is rejected: the
// result is always a well-formed event.
func AppendEvent(dst []byte, id, name string, data []byte) []byte {
	if hasKept(id, true) {
		dst = append(dst, "id: "...)
		dst = appendStripped(dst, id, true)
		dst = append(dst, '\n')
	}
	if hasKept(name, false) {
		dst = append(dst, "event: "...)
		dst = appendStripped(dst, name, false)
		dst = append(dst, '\n')
	}
	for {
		i := indexLineEnd(data)
		line := data
		if i >= 0 {
			line = data[:i]
		}
		if len(line) == 0 {
			dst = append(dst, "data\n"...)
		} else {
			dst = append(dst, "data: "...)
			dst = append(dst, line...)
			dst = append(dst, '\n')
		}
		if i < 0 {
			break
		}
		next := i + 1
		if data[i] == '\r' && next < len(data) && data[next] == '\n' {
			next++
		}
		data = data[next:]
	}
	return append(dst, '\n')
}

// AppendComment appends a comment block (": text" and a blank line), such as
// a heartbeat, to dst. A multi-line text becomes several comment lines.
// Clients ignore comment blocks; they keep idle connections open through
// intermediaries.
func AppendComment(dst []byte, text string) []byte {
	for {
		i := indexLineEndString(text)
		line := text
		if i >= 0 {
			line = text[:i]
		}
		if len(line) == 0 {
			dst = append(dst, ":\n"...)
		} else {
			dst = append(dst, ": "...)
			dst = append(dst, line...)
			dst = append(dst, '\n')
		}
		if i < 0 {
			break
		}
		next := i + 1
		if text[i] == '\r' && next < len(text) && text[next] == '\n' {
			next++
		}
		text = text[next:]
	}
	return append(dst, '\n')
}

func hasKept(s string, dropNUL bool) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '\n' && c != '\r' && !(dropNUL && c == 0) {
			return true
		}
	}
	return false
}

func appendStripped(dst []byte, s string, dropNUL bool) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\n' || c == '\r' || (dropNUL && c == 0) {
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

func indexLineEndString(s string) int {
	n := strings.IndexByte(s, '\n')
	if n < 0 {
		return strings.IndexByte(s, '\r')
	}
	if c := strings.IndexByte(s[:n], '\r'); c >= 0 {
		return c
	}
	return n
}
