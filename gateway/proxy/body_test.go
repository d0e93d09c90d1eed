package proxy_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/gateway/config"
)

// patternReader yields n deterministic bytes without holding them.
type patternReader struct{ off, n int64 }

func (r *patternReader) Read(b []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	if rem := r.n - r.off; int64(len(b)) > rem {
		b = b[:rem]
	}
	for i := range b {
		b[i] = byte((r.off + int64(i)) * 7 % 251)
	}
	r.off += int64(len(b))
	return len(b), nil
}

func TestLargeBodiesStreamBothWays(t *testing.T) {
	verifyNone(t)
	const size = 50 << 20
	want := sha256.New()
	io.Copy(want, &patternReader{n: size})
	wantSum := fmt.Sprintf("%x", want.Sum(nil))

	var upSum atomic.Value
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "PUT" {
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			upSum.Store(fmt.Sprintf("%d %x %v", n, h.Sum(nil), err))
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(size))
		io.Copy(w, &patternReader{n: size})
	}))
	g := startGateway(t, testConfig(t, []string{up.addr}, func(c *config.Config) {
		c.Limits.MaxBodyBytes = 64 << 20
	}), nil, nil)
	c := newClient(t)

	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	go func() {
		defer close(sampled)
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	// Upload: chunked (unknown length) and with Content-Length.
	for _, chunked := range []bool{true, false} {
		var body io.Reader = &patternReader{n: size}
		req, _ := http.NewRequest("PUT", "http://"+g.addr+"/up", body)
		if !chunked {
			req.ContentLength = size
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("upload (chunked=%v): status %d", chunked, resp.StatusCode)
		}
		if got := upSum.Load(); got != fmt.Sprintf("%d %s <nil>", size, wantSum) {
			t.Fatalf("upload (chunked=%v): upstream got %v", chunked, got)
		}
	}
	// Download.
	resp, err := c.Get("http://" + g.addr + "/down")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || n != size || fmt.Sprintf("%x", h.Sum(nil)) != wantSum {
		t.Fatalf("download: %d bytes, err %v", n, err)
	}
	close(stop)
	<-sampled
	// The test process holds client, gateway and upstream; all of them
	// stream, so the heap must stay far below the body size.
	grew := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("3 × 50 MiB through the gateway; heap in use grew by at most %d KiB", grew>>10)
	if grew > 8<<20 {
		t.Fatalf("heap grew by %d MiB while streaming 50 MiB bodies", grew>>20)
	}
}
