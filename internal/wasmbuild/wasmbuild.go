// Package wasmbuild compiles Wasm guests from the sources in this repository
// for tests and benchmarks, so that no test depends on a committed .wasm
// file or on `make` having run first.
//
// Each build is cached by the hash of its inputs under
// $WASMGATE_WASM_CACHE (default: the user cache dir + "/wasmgate-wasmbuild"),
// so a guest compiles once per change, not once per test. A missing
// toolchain is a loud failure naming the package to install: a test that
// needs a language never skips silently.
package wasmbuild

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
)

// Lang is a guest language.
type Lang string

// Languages this package builds. Rust and AssemblyScript builders live in
// rust.go and assemblyscript.go.
const (
	WAT            Lang = "wat"
	C              Lang = "c"
	Go             Lang = "go"
	Rust           Lang = "rust"
	AssemblyScript Lang = "assemblyscript"
)

// builders maps a language to the function that compiles src (a file or a
// directory) into out. Files of the same package register their language
// in init.
var builders = map[Lang]func(src, out string) error{
	WAT: buildWAT,
	C:   buildC,
	Go:  buildGo,
}

var mu sync.Mutex // serializes builds: toolchains on a 2-core box

// Build compiles src and returns the path of the cached .wasm file.
func Build(lang Lang, src string) (string, error) {
	b, ok := builders[lang]
	if !ok {
		return "", fmt.Errorf("wasmbuild: no builder for language %q", lang)
	}
	abs, err := filepath.Abs(src)
	if err != nil {
		return "", err
	}
	key, err := inputHash(lang, abs)
	if err != nil {
		return "", fmt.Errorf("wasmbuild: hash %s: %w", src, err)
	}
	dir, err := cacheDir()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, fmt.Sprintf("%s-%s-%s.wasm", lang, strings.TrimSuffix(filepath.Base(abs), filepath.Ext(abs)), key[:16]))
	mu.Lock()
	defer mu.Unlock()
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	tmp := out + ".tmp" + fmt.Sprint(os.Getpid())
	if err := b(abs, tmp); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("wasmbuild: build %s guest %s: %w", lang, src, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	return out, nil
}

// MustBuild is Build for tests: it fails the test on error.
func MustBuild(t testing.TB, lang Lang, src string) string {
	t.Helper()
	p, err := Build(lang, src)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// MustRead builds src and returns the module bytes.
func MustRead(t testing.TB, lang Lang, src string) []byte {
	t.Helper()
	b, err := os.ReadFile(MustBuild(t, lang, src))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RepoRoot returns the repository root (the directory holding go.mod),
// found from this source file, so tests in any package can name guests by
// their path from the root.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// Path joins elements onto the repository root.
func Path(elem ...string) string {
	return filepath.Join(append([]string{RepoRoot()}, elem...)...)
}

func cacheDir() (string, error) {
	dir := os.Getenv("WASMGATE_WASM_CACHE")
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		dir = filepath.Join(base, "wasmgate-wasmbuild")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("wasmbuild: cache dir: %w", err)
	}
	return dir, nil
}

// inputHash covers the source (every file under a directory source, plus
// the SDK trees a guest may include), the language, and this package's own
// sources, so that a change to a builder's flags rebuilds its guests.
func inputHash(lang Lang, src string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", lang, runtime.Version())
	builders, _ := filepath.Glob(Path("internal", "wasmbuild", "*.go"))
	roots := []string{src}
	for _, f := range builders {
		if !strings.HasSuffix(f, "_test.go") {
			roots = append(roots, f)
		}
	}
	switch lang {
	case C:
		roots = append(roots, Path("sdk", "c"))
	case Go:
		roots = append(roots, Path("sdk"), Path("go.mod"))
	case Rust:
		roots = append(roots, Path("sdk", "rust"))
	case AssemblyScript:
		roots = append(roots, Path("sdk", "assemblyscript"))
	}
	for _, root := range roots {
		var files []string
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) && p != src {
					return nil
				}
				return err
			}
			if d.IsDir() {
				switch d.Name() {
				case "node_modules", "target", ".git":
					return filepath.SkipDir
				}
				return nil
			}
			files = append(files, p)
			return nil
		})
		if err != nil {
			return "", err
		}
		sort.Strings(files)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "%s %d\n", f, len(b))
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// run executes a toolchain command and folds its output into the error.
func run(dir string, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return nil
}

// need returns an error naming how to install a missing tool.
func need(tool, install string) (string, error) {
	p, err := exec.LookPath(tool)
	if err != nil {
		return "", fmt.Errorf("toolchain missing: %s not found (install: %s)", tool, install)
	}
	return p, nil
}

func buildWAT(src, out string) error {
	tool, err := need("wat2wasm", "apt-get install wabt")
	if err != nil {
		return err
	}
	return run("", nil, tool, "--enable-all", src, "-o", out)
}

// buildC compiles a single C file (or every .c file in a directory) as a
// WASI reactor, with sdk/c on the include path.
func buildC(src, out string) error {
	tool, err := need("clang", "apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32")
	if err != nil {
		return err
	}
	files := []string{src}
	if st, err := os.Stat(src); err == nil && st.IsDir() {
		files, _ = filepath.Glob(filepath.Join(src, "*.c"))
		if len(files) == 0 {
			return fmt.Errorf("no .c files in %s", src)
		}
	}
	args := []string{"--target=wasm32-wasi", "-O2", "-mexec-model=reactor",
		"-I", Path("sdk", "c"), "-Wl,--strip-all", "-o", out}
	return run("", nil, tool, append(args, files...)...)
}

// buildGo compiles a Go main package directory with GOOS=wasip1 as a
// c-shared reactor (exports via //go:wasmexport).
func buildGo(src, out string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	return run(src, []string{"GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0"},
		goTool, "build", "-buildmode=c-shared", "-trimpath", "-o", out, ".")
}
