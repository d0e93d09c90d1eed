package sse

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
)

// benchStream is 64 typical events: an id, a name, two data lines.
func benchStream(dataSize int) []byte {
	var s []byte
	payload := strings.Repeat("x", dataSize)
	for i := range 64 {
		s = AppendEvent(s, strconv.Itoa(100000+i), "update", []byte(payload+"\n"+payload))
	}
	return s
}

func benchmarkParser(b *testing.B, dataSize int) {
	stream := benchStream(dataSize)
	p := NewParser(&linesReader{line: string(stream)}, 0)
	b.SetBytes(int64(len(stream) / 64))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParserSmall(b *testing.B) { benchmarkParser(b, 40) }
func BenchmarkParserLarge(b *testing.B) { benchmarkParser(b, 8<<10) }

// The baselines only split the same stream into lines with bufio.Reader
// (no field parsing, no event assembly): the floor for any line-based
// parser, to read the Parser figures against.
func benchmarkBaselineLines(b *testing.B, dataSize int) {
	stream := benchStream(dataSize)
	br := bufio.NewReaderSize(&linesReader{line: string(stream)}, 64<<10)
	b.SetBytes(int64(len(stream) / 64))
	b.ReportAllocs()
	for b.Loop() {
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			if len(line) == 1 {
				break
			}
		}
	}
}

func BenchmarkBaselineLinesSmall(b *testing.B) { benchmarkBaselineLines(b, 40) }
func BenchmarkBaselineLinesLarge(b *testing.B) { benchmarkBaselineLines(b, 8<<10) }

func BenchmarkAppendEvent(b *testing.B) {
	data := []byte(strings.Repeat("x", 40) + "\n" + strings.Repeat("y", 40))
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendEvent(buf[:0], "123456", "update", data)
	}
}
