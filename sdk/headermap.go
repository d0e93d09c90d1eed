package sdk

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Header is one header field (name lower case).
type Header = [2]string

// EncodeHeaders serializes header pairs in the ABI's map format: a u32
// count, a (u32 key length, u32 value length) pair per header, then each
// key and value followed by a NUL byte, all little-endian. No pairs encode
// as an empty slice.
func EncodeHeaders(h []Header) []byte {
	if len(h) == 0 {
		return nil
	}
	size := 4 + 8*len(h)
	for _, kv := range h {
		size += len(kv[0]) + len(kv[1]) + 2
	}
	b := make([]byte, 4+8*len(h), size)
	binary.LittleEndian.PutUint32(b, uint32(len(h)))
	for i, kv := range h {
		binary.LittleEndian.PutUint32(b[4+8*i:], uint32(len(kv[0])))
		binary.LittleEndian.PutUint32(b[8+8*i:], uint32(len(kv[1])))
	}
	for _, kv := range h {
		b = append(b, kv[0]...)
		b = append(b, 0)
		b = append(b, kv[1]...)
		b = append(b, 0)
	}
	return b
}

var errShortMap = errors.New("sdk: serialized map shorter than its header")

// DecodeHeaders parses the ABI's map format. An empty input or a single
// NUL byte is an empty map.
func DecodeHeaders(b []byte) ([]Header, error) {
	if len(b) <= 1 {
		return nil, nil
	}
	if len(b) < 4 {
		return nil, errShortMap
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4)/8 {
		return nil, fmt.Errorf("sdk: serialized map claims %d pairs in %d bytes", n, len(b))
	}
	off := 4 + 8*int(n)
	out := make([]Header, 0, n)
	for i := 0; i < int(n); i++ {
		kl := uint64(binary.LittleEndian.Uint32(b[4+8*i:]))
		vl := uint64(binary.LittleEndian.Uint32(b[8+8*i:]))
		if uint64(off)+kl+vl+2 > uint64(len(b)) {
			return nil, fmt.Errorf("sdk: serialized map pair %d overruns its %d bytes", i, len(b))
		}
		k := string(b[off : off+int(kl)])
		off += int(kl) + 1
		v := string(b[off : off+int(vl)])
		off += int(vl) + 1
		out = append(out, Header{k, v})
	}
	return out, nil
}
