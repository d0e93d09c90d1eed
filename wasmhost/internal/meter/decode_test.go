package meter

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
)

func TestRoundTrip(t *testing.T) {
	for _, g := range allGuests() {
		t.Run(g.name, func(t *testing.T) {
			wasm := g.wasm(t)
			m, err := Decode(wasm)
			if err != nil {
				t.Fatal(err)
			}
			if out := m.Encode(); !bytes.Equal(out, wasm) {
				t.Fatalf("decode→encode changed the module (%d → %d bytes)", len(wasm), len(out))
			}
			// The structured encoders (used when metering) must reproduce
			// each section's payload exactly. (Section sizes are compared
			// apart: Go's linker pads them to five bytes.)
			m.reencodeAll()
			for _, s := range m.sections {
				if s.out != nil && !bytes.Equal(s.out, s.body) {
					t.Errorf("%s section: structured re-encoding differs at byte %d of %d",
						sectionNames[s.id], firstDiff(s.out, s.body), len(s.body))
				}
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// mod builds a module from sections given as (id, payload) pairs.
func mod(sections ...[]byte) []byte {
	b := append([]byte(nil), header...)
	for _, s := range sections {
		b = appendSection(b, s[0], s[1:])
	}
	return b
}

// fn builds a one-function module: type () -> (), function 0 with body.
func fn(body ...byte) []byte {
	code := appendU32([]byte{secCode, 1}, uint32(len(body)+1))
	code = append(code, 0) // no locals
	code = append(code, body...)
	return mod([]byte{secType, 1, 0x60, 0, 0}, []byte{secFunction, 1, 0}, code)
}

func TestDecodeRefusesWithName(t *testing.T) {
	tests := []struct {
		name string
		wasm []byte
		want string
	}{
		{"empty", nil, "bad magic"},
		{"component", []byte{0, 'a', 's', 'm', 0x0d, 0, 1, 0}, "binary version"},
		{"tail call", fn(0x12, 0x00, 0x0b), "tail calls (return_call)"},
		{"exceptions", fn(0x06, 0x40, 0x0b, 0x0b), "exception handling (try)"},
		{"atomics", fn(0xfe, 0x03, 0x00, 0x0b), "threads"},
		{"gc prefix", fn(0xfb, 0x00, 0x0b), "garbage collection"},
		{"relaxed simd", fn(0xfd, 0x80, 0x02, 0x0b), "relaxed SIMD"},
		{"simd gap", fn(0xfd, 0x9a, 0x01, 0x0b), "unknown SIMD instruction"},
		{"multi-memory memarg", fn(0x41, 0, 0x28, 0x40, 0x01, 0x00, 0x1a, 0x0b), "multi-memory"},
		{"memory64", mod([]byte{secMemory, 1, 0x04, 1}), "memory64"},
		{"gc type", mod([]byte{secType, 1, 0x5f, 0, 0}), "GC types"},
		{"bad leb", fn(0x41, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x0b), "too long"},
		{"trailing code", fn(0x0b, 0x01), "after the function's end"},
		{"unterminated", fn(0x02, 0x40, 0x0b), "unexpected end"},
		{"huge vector", mod([]byte{secType, 0xff, 0xff, 0xff, 0xff, 0x0f}), "vector length"},
		{"order", mod([]byte{secFunction, 0}, []byte{secType, 0}), "out of order"},
		{"locals bomb", mod([]byte{secType, 1, 0x60, 0, 0}, []byte{secFunction, 1, 0},
			[]byte{secCode, 1, 8, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, typeI32, 0x0b}), "locals (limit"},
		{"missing code", mod([]byte{secType, 1, 0x60, 0, 0}, []byte{secFunction, 1, 0}), "without code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.wasm)
			if err == nil {
				t.Fatal("decoded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not name %q", err, tt.want)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not a *DecodeError", err)
			}
			if _, err := Instrument(tt.wasm, Config{}); err == nil {
				t.Fatal("Instrument accepted what Decode refuses")
			}
		})
	}
}

// FuzzDecode: arbitrary bytes never panic the decoder or the metering
// pass; whatever decodes re-encodes byte-identically; whatever is metered
// decodes again, and if wazero accepts the input it accepts the metered
// module too (the pass never produces an invalid module from a valid one).
func FuzzDecode(f *testing.F) {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	for _, g := range []guest{watGuest("features.wat"), watGuest("scan.wat"), watGuest("runaway.wat")} {
		f.Add(g.wasm(f))
	}
	f.Add(fn(0x0b))
	f.Add(hugeNameCount())
	f.Fuzz(func(t *testing.T, wasm []byte) {
		m, err := Decode(wasm)
		if err != nil {
			return
		}
		if out := m.Encode(); !bytes.Equal(out, wasm) {
			t.Fatalf("round trip changed the module")
		}
		out, err := Instrument(wasm, Config{})
		if err != nil {
			return
		}
		if _, err := Decode(out); err != nil {
			t.Fatalf("metered module does not decode: %v", err)
		}
		if len(wasm) > 1<<16 || m.locals > 1<<16 {
			return // validating big seeds (or wazero's per-local slots) would dominate
		}
		for _, s := range m.sections {
			if s.id != secCustom || s.name != "name" {
				continue
			}
			if _, ok := renumberNames(s.body, func(i uint32) uint32 { return i }); !ok {
				// wazero v1.12.0 sizes its name maps from the counts a name
				// section declares: a 40-byte module claiming 2^26 names
				// makes it allocate 1.5 GB, 2^31 kill the process. The
				// metered form drops such a section; only the original
				// would reach wazero.
				return
			}
		}
		cm, err := rt.CompileModule(ctx, wasm)
		if err != nil {
			return
		}
		cm.Close(ctx)
		cm, err = rt.CompileModule(ctx, out)
		if err != nil {
			t.Fatalf("wazero accepts the module but not its metered form: %v", err)
		}
		cm.Close(ctx)
	})
}

// hugeNameCount is a module whose name section claims 2^31-1 function
// names and holds none (see FuzzDecode).
func hugeNameCount() []byte {
	sub := appendU32(nil, 1<<31-1)
	name := append(appendName(nil, "name"), 1)
	name = append(appendU32(name, uint32(len(sub))), sub...)
	return appendSection(append([]byte(nil), header...), secCustom, name)
}
