package wasmhost

import (
	"context"
	"errors"
	"fmt"

	"github.com/tetratelabs/wazero"
)

// compileGuarded compiles wasm and turns a panic inside wazero into an
// error. wazero v1.12.0 panics on some malformed modules instead of
// refusing them (found by the meter's FuzzDecode: a function whose type
// index is out of range); a hostile plugin file must cost the gateway a
// refused plugin, never the process.
func compileGuarded(ctx context.Context, rt wazero.Runtime, wasm []byte) (cm wazero.CompiledModule, err error) {
	defer func() {
		if r := recover(); r != nil {
			cm, err = nil, fmt.Errorf("compile: malformed module (wazero panicked: %v)", r)
		}
	}()
	return rt.CompileModule(ctx, wasm)
}

// stripCustomSections returns wasm without its custom sections. A module
// the meter instruments loses a malformed name section in the meter; one
// that reaches wazero unmetered (cpu_fallback: watchdog) goes through
// this instead, because wazero v1.12.0 sizes its name maps from the
// counts a name section declares: 40 bytes claiming 2^31 names make it
// allocate until the process dies. Custom sections never change what a
// module does; only trap backtraces lose their function names.
func stripCustomSections(wasm []byte) ([]byte, error) {
	if len(wasm) < 8 {
		return nil, errors.New("module shorter than its 8-byte header")
	}
	out := make([]byte, 0, len(wasm))
	out = append(out, wasm[:8]...)
	for i := 8; i < len(wasm); {
		start := i
		id := wasm[i]
		i++
		var size uint64
		for shift := 0; ; shift += 7 {
			if shift > 28 || i >= len(wasm) {
				return nil, fmt.Errorf("section at offset %d: bad size", start)
			}
			b := wasm[i]
			i++
			size |= uint64(b&0x7f) << shift
			if b < 0x80 {
				break
			}
		}
		if size > uint64(len(wasm)-i) {
			return nil, fmt.Errorf("section at offset %d: size %d past the end of the module", start, size)
		}
		end := i + int(size)
		if id != 0 {
			out = append(out, wasm[start:end]...)
		}
		i = end
	}
	return out, nil
}
