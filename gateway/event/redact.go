package event

import "github.com/wasmgate/wasmgate/internal/ascii"

// HeaderSet is a set of header names matched in any ASCII case: the names
// whose values are recorded as [Redacted] (sessions.redact). The proxy and
// the store test every header of every recorded event against it, so a
// lookup compares lengths first and allocates nothing: most names differ
// in length from every name in the set.
type HeaderSet struct {
	byLen [][]string // byLen[n]: the names n bytes long
}

// NewHeaderSet returns the set of names.
func NewHeaderSet(names []string) HeaderSet {
	var s HeaderSet
	for _, n := range names {
		if len(n) >= len(s.byLen) {
			s.byLen = append(s.byLen, make([][]string, len(n)+1-len(s.byLen))...)
		}
		s.byLen[len(n)] = append(s.byLen[len(n)], n)
	}
	return s
}

// Has reports whether name is in s.
func (s HeaderSet) Has(name string) bool { return has(s, name) }

// HasBytes is Has for a name in bytes.
func (s HeaderSet) HasBytes(name []byte) bool { return has(s, name) }

func has[T string | []byte](s HeaderSet, name T) bool {
	if len(name) >= len(s.byLen) {
		return false
	}
	for _, n := range s.byLen[len(name)] {
		if ascii.EqualFold(n, name) {
			return true
		}
	}
	return false
}
