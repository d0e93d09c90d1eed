package filewatch

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// replace writes data to path the way each kind of writer does.
var writers = []struct {
	name  string
	write func(t *testing.T, path string, data []byte)
}{
	{"in place", func(t *testing.T, path string, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}},
	{"atomic rename", func(t *testing.T, path string, data []byte) {
		tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}},
	{"editor backup", func(t *testing.T, path string, data []byte) {
		// vim-style: move the original away, write a new file, delete the backup.
		if err := os.Rename(path, path+"~"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Remove(path + "~")
	}},
	{"chunked", func(t *testing.T, path string, data []byte) {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := range data {
			f.Write(data[i : i+1])
			time.Sleep(time.Millisecond)
		}
		f.Close()
	}},
}

func TestReportsEachWayOfReplacing(t *testing.T) {
	for _, wr := range writers {
		t.Run(wr.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "plugin.wasm")
			other := filepath.Join(dir, "other.wasm")
			os.WriteFile(path, []byte("v1"), 0o644)
			os.WriteFile(other, []byte("x"), 0o644)
			got := make(chan string, 16)
			w, err := New(nil, 30*time.Millisecond, func(p string) {
				b, _ := os.ReadFile(p)
				got <- string(b)
			})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if err := w.Set([]string{path}); err != nil {
				t.Fatal(err)
			}
			wr.write(t, path, []byte("version-2"))
			os.WriteFile(other, []byte("unwatched change"), 0o644)
			select {
			case v := <-got:
				if v != "version-2" {
					t.Fatalf("callback saw %q, want the whole new file", v)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("no change reported")
			}
			select {
			case v := <-got:
				t.Fatalf("extra report %q (debounce or unwatched file leak)", v)
			case <-time.After(150 * time.Millisecond):
			}
		})
	}
}

func TestSameContentIsNotReported(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.wasm")
	os.WriteFile(path, []byte("same"), 0o644)
	got := make(chan string, 4)
	w, err := New(nil, 10*time.Millisecond, func(p string) { got <- p })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Set([]string{path})
	os.WriteFile(path, []byte("same"), 0o644)
	now := time.Now()
	os.Chtimes(path, now, now)
	select {
	case p := <-got:
		t.Fatalf("unchanged content reported: %s", p)
	case <-time.After(200 * time.Millisecond):
	}
	// Unwatching stops reports.
	w.Set(nil)
	os.WriteFile(path, []byte("changed"), 0o644)
	select {
	case p := <-got:
		t.Fatalf("unwatched file reported: %s", p)
	case <-time.After(200 * time.Millisecond):
	}
}
