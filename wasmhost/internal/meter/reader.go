package meter

import (
	"fmt"
	"unicode/utf8"
)

// reader walks a byte slice with the Wasm binary format's primitive
// encodings. Every read is bounds-checked and every LEB128 is checked for
// the spec's length and unused-bit rules, so arbitrary input yields an
// error, never a panic.
type reader struct {
	b   []byte
	pos int
	// base is the offset of b[0] in the whole module, for error messages.
	base int
}

// DecodeError reports where and why a module could not be decoded.
type DecodeError struct {
	Offset int
	Msg    string
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("meter: offset %#x: %s", e.Offset, e.Msg)
}

func (r *reader) errorf(format string, args ...any) error {
	return &DecodeError{Offset: r.base + r.pos, Msg: fmt.Sprintf(format, args...)}
}

func (r *reader) eof() bool { return r.pos >= len(r.b) }

func (r *reader) remaining() int { return len(r.b) - r.pos }

func (r *reader) byte() (byte, error) {
	if r.pos >= len(r.b) {
		return 0, r.errorf("unexpected end")
	}
	c := r.b[r.pos]
	r.pos++
	return c, nil
}

func (r *reader) bytes(n uint32) ([]byte, error) {
	if uint64(n) > uint64(r.remaining()) {
		return nil, r.errorf("length %d exceeds the %d bytes left", n, r.remaining())
	}
	s := r.b[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return s, nil
}

// uleb reads an unsigned LEB128 of at most bits bits.
func (r *reader) uleb(bits uint) (uint64, error) {
	var v uint64
	maxBytes := int((bits + 6) / 7)
	for i := 0; ; i++ {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		if i == maxBytes-1 {
			used := bits - uint(7*i)
			if c&0x80 != 0 || c>>used != 0 {
				return 0, r.errorf("integer representation too long or out of range")
			}
		}
		v |= uint64(c&0x7f) << (7 * uint(i))
		if c&0x80 == 0 {
			return v, nil
		}
	}
}

// sleb reads a signed LEB128 of at most bits bits.
func (r *reader) sleb(bits uint) (int64, error) {
	var v int64
	maxBytes := int((bits + 6) / 7)
	var shift uint
	for i := 0; ; i++ {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		if i == maxBytes-1 {
			used := bits - uint(7*i)
			mask := byte(0x7f) &^ (byte(1)<<(used-1) - 1)
			if c&0x80 != 0 || (c&mask != 0 && c&mask != mask) {
				return 0, r.errorf("integer representation too long or out of range")
			}
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v, nil
		}
	}
}

func (r *reader) u32() (uint32, error) {
	v, err := r.uleb(32)
	return uint32(v), err
}

// count reads a vector length and rejects lengths that cannot fit in the
// remaining bytes (each element takes at least minSize bytes), so hostile
// counts never drive allocations.
func (r *reader) count(minSize int) (uint32, error) {
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	if uint64(n)*uint64(minSize) > uint64(r.remaining()) {
		return 0, r.errorf("vector length %d exceeds the %d bytes left", n, r.remaining())
	}
	return n, nil
}

func (r *reader) name() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	b, err := r.bytes(n)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", r.errorf("name is not valid UTF-8")
	}
	return string(b), nil
}

// Value types and reference types of Wasm 2.0.
const (
	typeI32       = 0x7f
	typeI64       = 0x7e
	typeF32       = 0x7d
	typeF64       = 0x7c
	typeV128      = 0x7b
	typeFuncref   = 0x70
	typeExternref = 0x6f
)

func isValType(c byte) bool {
	switch c {
	case typeI32, typeI64, typeF32, typeF64, typeV128, typeFuncref, typeExternref:
		return true
	}
	return false
}

func isRefType(c byte) bool { return c == typeFuncref || c == typeExternref }

func (r *reader) valType() (byte, error) {
	c, err := r.byte()
	if err != nil {
		return 0, err
	}
	if !isValType(c) {
		r.pos--
		return 0, r.errorf("unsupported value type %#x (Wasm 3.0 GC or typed function references?)", c)
	}
	return c, nil
}

func (r *reader) refType() (byte, error) {
	c, err := r.byte()
	if err != nil {
		return 0, err
	}
	if !isRefType(c) {
		r.pos--
		return 0, r.errorf("unsupported reference type %#x", c)
	}
	return c, nil
}

// limits reads table or memory limits. Memory may be shared (threads); the
// 64-bit and custom-page-size flags of later proposals are refused.
func (r *reader) limits(memory bool) error {
	flags, err := r.byte()
	if err != nil {
		return err
	}
	max := flags == 0x01 || (memory && flags == 0x03)
	switch {
	case flags == 0x00 || flags == 0x01:
	case memory && (flags == 0x02 || flags == 0x03):
	default:
		r.pos--
		return r.errorf("unsupported limits flags %#x (memory64 or a later proposal)", flags)
	}
	if _, err := r.u32(); err != nil {
		return err
	}
	if max {
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return nil
}
