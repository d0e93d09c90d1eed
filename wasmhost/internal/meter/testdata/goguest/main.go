// Command goguest is a GOOS=wasip1 reactor used by the meter package's
// differential tests and benchmarks: a 1 KB scan, and work that drives the
// Go runtime (allocation, maps, sorting, GC) through metered code.
package main

import (
	"runtime"
	"sort"
	"strings"
	"unsafe"
)

var buf [4096]byte

//go:wasmimport env trace
func trace(i int32, v int64)

//go:wasmexport buffer
func buffer() int32 { return int32(uintptr(unsafe.Pointer(&buf[0]))) }

// scan counts the line breaks and colons in the first n bytes of buf, the
// shape of a header scan.
//
//go:wasmexport scan
func scan(n int32) int32 {
	c := int32(0)
	for _, b := range buf[:n] {
		if b == '\n' || b == ':' {
			c++
		}
	}
	return c
}

//go:wasmexport work
func work(n int32) int64 {
	m := map[string]int{}
	var words []string
	for i := int32(0); i < n; i++ {
		w := strings.Repeat(string(rune('a'+i%26)), int(i%7)+1)
		m[w]++
		words = append(words, w)
	}
	sort.Strings(words)
	sum := int64(0)
	for i, w := range words {
		sum += int64(i * len(w) * m[w])
	}
	trace(n, sum)
	if n%3 == 0 {
		runtime.GC()
	}
	return sum
}

func main() {}
