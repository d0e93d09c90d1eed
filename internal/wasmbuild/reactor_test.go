package wasmbuild

import (
	"context"
	"os"
	"testing"

	"github.com/tetratelabs/wazero"
)

// sectionIDs lists the section ids of a Wasm binary in order.
func sectionIDs(t *testing.T, b []byte) []byte {
	t.Helper()
	var ids []byte
	for i := 8; i < len(b); {
		id := b[i]
		i++
		size, shift := 0, 0
		for {
			c := b[i]
			i++
			size |= int(c&0x7f) << shift
			shift += 7
			if c < 0x80 {
				break
			}
		}
		ids = append(ids, id)
		i += size
	}
	return ids
}

// TestReactorBuilders: the Rust and AssemblyScript builders make WASI
// reactors: an exported _initialize, no Wasm start function (which would
// run guest code during instantiation, before the host can bound it), and
// the proxy-wasm memory allocator; a second build comes from the cache.
func TestReactorBuilders(t *testing.T) {
	for _, tc := range []struct {
		lang Lang
		src  string
	}{
		{Rust, Path("examples", "rust")},
		{AssemblyScript, Path("examples", "assemblyscript")},
	} {
		t.Run(string(tc.lang), func(t *testing.T) {
			p := MustBuild(t, tc.lang, tc.src)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range sectionIDs(t, b) {
				if id == 8 {
					t.Fatal("module has a start section")
				}
			}
			ctx := context.Background()
			rt := wazero.NewRuntime(ctx)
			defer rt.Close(ctx)
			cm, err := rt.CompileModule(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			exports := cm.ExportedFunctions()
			for _, name := range []string{"_initialize", "proxy_on_memory_allocate", "proxy_abi_version_0_2_1"} {
				if _, ok := exports[name]; !ok {
					t.Errorf("no export %s", name)
				}
			}
			if p2 := MustBuild(t, tc.lang, tc.src); p2 != p {
				t.Errorf("second build not cached: %s vs %s", p, p2)
			}
		})
	}
}
