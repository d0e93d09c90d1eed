package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/gateway"
	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/event"
	"github.com/wasmgate/wasmgate/gateway/store"
)

const gwCrashDirEnv = "WASMGATE_GATEWAY_CRASH_DIR"

// TestGatewayCrashChild is the gateway process TestGatewayCrashRecovery
// kills. It records through a store worker configured from the same
// storage section as newRecorder, and after each commit prints
// "C session:seq ..." (one write(2) per line) to stdout.
func TestGatewayCrashChild(t *testing.T) {
	dir := os.Getenv(gwCrashDirEnv)
	if dir == "" {
		t.Skip("started only by TestGatewayCrashRecovery")
	}
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"ok":true}`) })
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
listen: 127.0.0.1:0
admin: {listen: ""}
upstreams: [{name: up, targets: [%q]}]
routes: [{name: r, upstream: up}]
storage: {path: %q}
`, up, dir)))
	if err != nil {
		fmt.Println("config:", err)
		os.Exit(3)
	}
	s, err := store.Open(dir, store.Options{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(3)
	}
	wo := store.WorkerOptionsFrom(cfg.Storage, cfg.Sessions)
	var line []byte
	wo.OnCommit = func(evs []*event.Event) {
		line = append(line[:0], 'C')
		for _, e := range evs {
			line = append(line, ' ')
			line = append(line, e.Session...)
			line = append(line, ':')
			line = strconv.AppendUint(line, e.Seq, 10)
		}
		line = append(line, '\n')
		os.Stdout.Write(line)
	}
	w, err := store.NewWorker(s, wo)
	if err != nil {
		fmt.Println("worker:", err)
		os.Exit(3)
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler), Chains: chain.NopBuilder{}, Sink: w, Replayer: s})
	if err != nil {
		fmt.Println("gateway:", err)
		os.Exit(3)
	}
	if err := g.Start(); err != nil {
		fmt.Println("start:", err)
		os.Exit(3)
	}
	fmt.Printf("ready %s\n", g.Addr())
	time.Sleep(time.Minute) // killed long before
	os.Exit(4)
}

// TestGatewayCrashRecovery puts a gateway process under session load and
// SIGKILLs it at random moments, ten times; after each kill the store must
// open within a second and hold every event the child reported committed.
func TestGatewayCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	dir := t.TempDir()
	committed := map[string]bool{}
	for run := 1; run <= 10; run++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestGatewayCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), gwCrashDirEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		if !sc.Scan() || !strings.HasPrefix(sc.Text(), "ready ") {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("run %d: child did not start: %q", run, sc.Text())
		}
		addr := strings.TrimPrefix(sc.Text(), "ready ")

		// Session load: 16 clients, 50 sessions, until the kill.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		tr := &http.Transport{MaxIdleConnsPerHost: 16}
		c := &http.Client{Transport: tr, Timeout: 2 * time.Second}
		for p := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					req, _ := http.NewRequest("POST", "http://"+addr+"/mcp", strings.NewReader(`{"jsonrpc":"2.0"}`))
					req.Header.Set("Mcp-Session-Id", fmt.Sprintf("run%d-s%02d", run, (p*7+i)%50))
					resp, err := c.Do(req)
					if err != nil {
						continue // the kill
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
		}
		killAfter := time.Duration(50+rand.IntN(400)) * time.Millisecond
		timer := time.AfterFunc(killAfter, func() { cmd.Process.Signal(syscall.SIGKILL) })
		// Each line is one write(2) under PIPE_BUF: a kill never splits one.
		lines := 0
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 || f[0] != "C" {
				t.Fatalf("run %d: unexpected child output %q", run, sc.Text())
			}
			for _, pair := range f[1:] {
				committed[pair] = true
			}
			lines++
		}
		timer.Stop()
		cmd.Wait()
		close(stop)
		wg.Wait()
		tr.CloseIdleConnections()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("run %d: child exited by itself: %v", run, cmd.ProcessState)
		}

		start := time.Now()
		s, err := store.Open(dir, store.Options{})
		took := time.Since(start)
		if err != nil {
			t.Fatalf("run %d: reopen after kill: %v", run, err)
		}
		if took > time.Second {
			t.Errorf("run %d: reopen took %v", run, took)
		}
		missing := 0
		for pair := range committed {
			id, seqStr, _ := strings.Cut(pair, ":")
			seq, _ := strconv.ParseUint(seqStr, 10, 64)
			evs, err := s.Events(id, seq-1, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 1 || evs[0].Seq != seq {
				missing++
			}
		}
		s.Close()
		if missing > 0 {
			t.Fatalf("run %d: %d of %d committed events missing after SIGKILL", run, missing, len(committed))
		}
		t.Logf("run %d: killed after %v, %d commits reported, %d committed events present, reopen %v", run, killAfter, lines, len(committed), took)
	}
	if len(committed) < 100 {
		t.Fatalf("only %d events committed over 10 runs", len(committed))
	}
}
