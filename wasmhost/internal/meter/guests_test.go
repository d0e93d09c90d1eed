package meter

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

// guest is a module of the repository that the tests decode, meter and run.
type guest struct {
	name string
	wasm func(t testing.TB) []byte
	// skip names exports the differential must not call: they never
	// return unmetered.
	skip map[string]bool
}

var watCache sync.Map

// buildWAT20 compiles a WAT file of testdata with wat2wasm's default
// features (exactly Wasm 2.0) and a name section. wasmbuild passes
// --enable-all, under which wabt 1.0.32 types ref.func as a typed
// function reference and rejects valid Wasm 2.0 (ref.func in a global
// initializer or table.fill), so the meter's own WAT guests are built here.
func buildWAT20(t testing.TB, name string) []byte {
	t.Helper()
	if b, ok := watCache.Load(name); ok {
		return b.([]byte)
	}
	tool, err := exec.LookPath("wat2wasm")
	if err != nil {
		t.Fatalf("toolchain missing: wat2wasm (install: apt-get install wabt)")
	}
	out := filepath.Join(t.TempDir(), name+".wasm")
	cmd := exec.Command(tool, "--debug-names", filepath.Join("testdata", name), "-o", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm %s: %v\n%s", name, err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	watCache.Store(name, b)
	return b
}

func watGuest(name string) guest {
	return guest{name: "wat/" + name, wasm: func(t testing.TB) []byte { return buildWAT20(t, name) }}
}

func repoGuest(lang wasmbuild.Lang, path ...string) guest {
	return guest{name: string(lang) + "/" + filepath.Join(path...), wasm: func(t testing.TB) []byte {
		return wasmbuild.MustRead(t, lang, wasmbuild.Path(path...))
	}}
}

// hostileGuest is wasmhost's hostile plugin; its proxy_on_tick spins
// forever.
func hostileGuest() guest {
	g := repoGuest(wasmbuild.C, "wasmhost", "testdata", "hostile.c")
	g.skip = map[string]bool{"proxy_on_tick": true}
	return g
}

// allGuests lists every guest of the repository the meter is tested on:
// its own test guests, the examples, and the wasmbuild test guests.
// Languages whose examples have not landed are covered by the meter's own
// guest in that language.
func allGuests() []guest {
	gs := []guest{
		watGuest("features.wat"),
		watGuest("scan.wat"),
		watGuest("runaway.wat"),
		repoGuest(wasmbuild.C, "wasmhost", "internal", "meter", "testdata", "scan.c"),
		repoGuest(wasmbuild.Go, "wasmhost", "internal", "meter", "testdata", "goguest"),
		repoGuest(wasmbuild.Rust, "wasmhost", "internal", "meter", "testdata", "rustguest"),
		repoGuest(wasmbuild.WAT, "examples", "wat", "interceptor.wat"),
		repoGuest(wasmbuild.C, "examples", "c"),
		repoGuest(wasmbuild.WAT, "internal", "wasmbuild", "testdata", "add.wat"),
		repoGuest(wasmbuild.C, "internal", "wasmbuild", "testdata", "add.c"),
		repoGuest(wasmbuild.C, "wasmhost", "testdata", "all.c"),
		repoGuest(wasmbuild.WAT, "wasmhost", "testdata", "headers.wat"),
		hostileGuest(),
	}
	for _, ex := range []struct {
		lang wasmbuild.Lang
		dir  string
	}{{wasmbuild.Go, "go"}, {wasmbuild.Rust, "rust"}, {wasmbuild.AssemblyScript, "assemblyscript"}} {
		if entries, err := os.ReadDir(wasmbuild.Path("examples", ex.dir)); err == nil && len(entries) > 0 {
			if _, err := wasmbuild.Build(ex.lang, wasmbuild.Path("examples", ex.dir)); err == nil {
				gs = append(gs, repoGuest(ex.lang, "examples", ex.dir))
			}
		}
	}
	return gs
}
