package wasmbuild

import (
	"bytes"
	"os"
	"testing"
)

func TestBuildCachesByContent(t *testing.T) {
	t.Setenv("WASMGATE_WASM_CACHE", t.TempDir())
	for _, tt := range []struct {
		lang Lang
		src  string
	}{{WAT, "testdata/add.wat"}, {C, "testdata/add.c"}} {
		p1 := MustBuild(t, tt.lang, tt.src)
		b, err := os.ReadFile(p1)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("\x00asm")) {
			t.Fatalf("%s: not a wasm module", tt.lang)
		}
		if p2 := MustBuild(t, tt.lang, tt.src); p2 != p1 {
			t.Fatalf("%s: second build not cached: %s vs %s", tt.lang, p1, p2)
		}
	}
	if _, err := Build("cobol", "x"); err == nil {
		t.Fatal("unknown language accepted")
	}
}
