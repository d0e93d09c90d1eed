package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

func TestPluginsCheck(t *testing.T) {
	good := wasmbuild.MustBuild(t, wasmbuild.C, wasmbuild.Path("wasmhost", "testdata", "all.c"))
	bad := filepath.Join(t.TempDir(), "bad.wasm")
	if err := os.WriteFile(bad, []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	devnull, _ := os.Open(os.DevNull)
	defer devnull.Close()
	stdout := os.Stdout
	os.Stdout = devnull
	defer func() { os.Stdout = stdout }()
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"check", good}, 0},
		{[]string{"check", bad}, 1},
		{[]string{"check", good, bad}, 1},
		{[]string{"check", filepath.Join(t.TempDir(), "missing.wasm")}, 1},
		{[]string{"nope"}, 2},
		{nil, 2},
	} {
		if got := pluginsCmd(tc.args); got != tc.want {
			t.Errorf("plugins %v: exit %d, want %d", tc.args, got, tc.want)
		}
	}
}
