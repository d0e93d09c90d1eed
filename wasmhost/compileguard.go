package wasmhost

import (
	"context"
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
