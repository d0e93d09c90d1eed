package wasmbuild

import (
	"fmt"
	"os"
	"path/filepath"
)

func init() { builders[Rust] = buildRust }

// rustReactorCRT is the WASI reactor start file of Debian's
// libstd-rust-dev-wasm32: linked in, it defines _initialize (running static
// constructors once) so exports do not each run them.
const rustReactorCRT = "/usr/lib/rustlib/wasm32-wasi/lib/self-contained/crt1-reactor.o"

// buildRust compiles a cdylib crate directory for wasm32-wasi as a reactor
// with Debian's rustc and cargo (absolute paths: another rustc on PATH may
// lack the wasm32-wasi std). Builds are offline: std only, no registry.
func buildRust(src, out string) error {
	const install = "apt-get install rustc cargo libstd-rust-dev-wasm32"
	for _, tool := range []string{"/usr/bin/rustc", "/usr/bin/cargo", rustReactorCRT} {
		if _, err := os.Stat(tool); err != nil {
			return fmt.Errorf("toolchain missing: %s not found (install: %s)", tool, install)
		}
	}
	target, err := os.MkdirTemp("", "wasmbuild-rust-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(target)
	env := []string{
		"RUSTC=/usr/bin/rustc",
		"RUSTFLAGS=-C link-arg=" + rustReactorCRT + " -C link-arg=--export=_initialize",
		"CARGO_TARGET_DIR=" + target,
	}
	if err := run(src, env, "/usr/bin/cargo", "build", "--offline", "--quiet", "--release", "--target", "wasm32-wasi"); err != nil {
		return err
	}
	wasm, _ := filepath.Glob(filepath.Join(target, "wasm32-wasi", "release", "*.wasm"))
	if len(wasm) != 1 {
		return fmt.Errorf("cargo built %d .wasm files in %s, want 1 (a cdylib crate)", len(wasm), src)
	}
	b, err := os.ReadFile(wasm[0])
	if err != nil {
		return err
	}
	return os.WriteFile(out, b, 0o644)
}
