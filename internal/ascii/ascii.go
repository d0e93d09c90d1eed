// Package ascii compares header names, which are ASCII, without allocating:
// strings.EqualFold takes two strings, and a name read from fasthttp or
// from guest memory is bytes.
package ascii

import "strings"

// EqualFold is strings.EqualFold(a, string(b)) without the conversion
// while the bytes are ASCII; a pair that differs at a non-ASCII byte takes
// strings.EqualFold itself (and the conversion).
func EqualFold[T string | []byte](a string, b T) bool {
	for i := range min(len(a), len(b)) {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if x|y >= 0x80 {
			return strings.EqualFold(a, string(b))
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	// Equal so far and all ASCII: a longer side has bytes left, which no
	// fold of nothing matches.
	return len(a) == len(b)
}
