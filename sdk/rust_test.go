package sdk_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

// TestRustCrateUnitTests runs the Rust SDK's own unit tests (map
// serialization, SSE event, JSON strings) with Debian's cargo on the host
// target. A missing toolchain fails: CI installs it (scripts/toolchains.sh).
func TestRustCrateUnitTests(t *testing.T) {
	for _, tool := range []string{"/usr/bin/cargo", "/usr/bin/rustc"} {
		if _, err := os.Stat(tool); err != nil {
			t.Fatalf("toolchain missing: %s (install: apt-get install rustc cargo)", tool)
		}
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	cmd := exec.Command("/usr/bin/cargo", "test", "--offline", "--quiet")
	cmd.Dir = wasmbuild.Path("sdk", "rust")
	cmd.Env = append(os.Environ(), "RUSTC=/usr/bin/rustc",
		"CARGO_TARGET_DIR="+filepath.Join(cache, "wasmgate-cargo-test"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cargo test in sdk/rust: %v\n%s", err, out)
	}
}
