package store

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/gateway/event"
)

const (
	crashDirEnv = "WASMGATE_STORE_CRASH_DIR"
	crashRunEnv = "WASMGATE_STORE_CRASH_RUN"
)

// TestCrashChild is the process TestCrashRecovery kills; it does nothing
// unless started by it. It records events from several producers as fast as
// the worker takes them and, after each successful commit, writes one line
// "C run session:seq ..." to stdout (a pipe; one write(2) per line).
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("started only by TestCrashRecovery")
	}
	run, _ := strconv.Atoi(os.Getenv(crashRunEnv))
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Printf("open failed: %v\n", err)
		os.Exit(3)
	}
	var line []byte
	w, err := NewWorker(s, WorkerOptions{OnCommit: func(evs []*event.Event) {
		line = append(line[:0], "C "...)
		line = strconv.AppendInt(line, int64(run), 10)
		for _, e := range evs {
			line = append(line, ' ')
			line = append(line, e.Session...)
			line = append(line, ':')
			line = strconv.AppendUint(line, e.Seq, 10)
		}
		line = append(line, '\n')
		os.Stdout.Write(line)
	}})
	if err != nil {
		fmt.Printf("worker failed: %v\n", err)
		os.Exit(3)
	}
	os.Stdout.WriteString("ready\n")
	var n atomic.Int64
	for p := range 4 {
		go func() {
			r := rand.New(rand.NewPCG(uint64(run), uint64(p)))
			for {
				i := n.Add(1)
				w.Record(&event.Event{Session: fmt.Sprintf("s%03d", r.IntN(200)), Type: event.Request,
					Path: "/x", Message: fmt.Sprintf("run=%d n=%d", run, i), Body: make([]byte, 100+r.IntN(300))})
			}
		}()
	}
	time.Sleep(time.Minute) // killed long before
	os.Exit(4)
}

// TestCrashRecovery SIGKILLs a recording process at random moments, then
// checks that the store opens quickly and holds every event whose commit
// the child reported, and that numbering resumed above what was on disk.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	dir := t.TempDir()
	const kills = 12
	committed := map[string]int{} // "session:seq" → run
	for run := 1; run <= kills; run++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashRunEnv+"="+strconv.Itoa(run))
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
		if !sc.Scan() || sc.Text() != "ready" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("run %d: child did not start: %q %v", run, sc.Text(), sc.Err())
		}
		killAfter := time.Duration(20+rand.IntN(300)) * time.Millisecond
		timer := time.AfterFunc(killAfter, func() { cmd.Process.Signal(syscall.SIGKILL) })
		// The child writes each line with one write(2) of < PIPE_BUF bytes,
		// so a kill never leaves half a line in the pipe.
		lines := 0
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 || f[0] != "C" || f[1] != strconv.Itoa(run) {
				t.Fatalf("run %d: unexpected child output %q", run, sc.Text())
			}
			for _, pair := range f[2:] {
				committed[pair] = run
			}
			lines++
		}
		timer.Stop()
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("run %d: child ended with %v, not by SIGKILL", run, err)
		}

		start := time.Now()
		s, err := Open(dir, Options{})
		openTime := time.Since(start)
		if err != nil {
			t.Fatalf("run %d: reopen after kill: %v", run, err)
		}
		if openTime > time.Second {
			t.Errorf("run %d: reopen took %v", run, openTime)
		}
		// Read everything back once: session:seq → run that wrote it.
		stored := map[string]int{}
		for i := range 200 {
			id := fmt.Sprintf("s%03d", i)
			evs, err := s.Events(id, 0, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			lastRun := 0
			for _, e := range evs {
				var r, n int
				if _, err := fmt.Sscanf(e.Message, "run=%d n=%d", &r, &n); err != nil {
					t.Fatalf("run %d: %s/%d: bad message %q", run, id, e.Seq, e.Message)
				}
				// A later run numbering below an earlier one would mean
				// the last seq was not recovered.
				if r < lastRun {
					t.Fatalf("run %d: %s/%d written by run %d after run %d's events", run, id, e.Seq, r, lastRun)
				}
				lastRun = r
				stored[fmt.Sprintf("%s:%d", id, e.Seq)] = r
			}
		}
		missing := 0
		for pair, r := range committed {
			got, ok := stored[pair]
			if !ok {
				missing++
				continue
			}
			if got != r {
				t.Fatalf("run %d: %s holds run %d's event, committed by run %d: a number was reused", run, pair, got, r)
			}
		}
		if missing > 0 {
			t.Fatalf("run %d: %d of %d committed events missing after SIGKILL", run, missing, len(committed))
		}
		t.Logf("run %d: killed after %v, %d commits reported, %d committed events verified (%d stored), reopen %v",
			run, killAfter, lines, len(committed), len(stored), openTime)
		s.Close()
	}
	if len(committed) < kills*100 {
		t.Fatalf("only %d events committed over %d runs: the child hardly wrote", len(committed), kills)
	}
}
