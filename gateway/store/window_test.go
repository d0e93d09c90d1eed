package store

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmgate/wasmgate/gateway/event"
)

// commitLog records the batches a worker reports committed, as
// "session/seq:message" lists.
type commitLog struct {
	mu      sync.Mutex
	batches [][]string
}

func (l *commitLog) onCommit(evs []*event.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b []string
	for _, e := range evs {
		b = append(b, fmt.Sprintf("%s/%d:%s", e.Session, e.Seq, e.Message))
	}
	l.batches = append(l.batches, b)
}

// has reports whether an event with message msg is committed.
func (l *commitLog) has(msg string) bool { return l.batchOf(msg) != nil }

// batchOf is the batch holding msg (nil if none).
func (l *commitLog) batchOf(msg string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.batches {
		for _, e := range b {
			if strings.HasSuffix(e, ":"+msg) {
				return b
			}
		}
	}
	return nil
}

func (l *commitLog) wait(t *testing.T, msg string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if l.has(msg) {
			return
		}
	}
	t.Fatalf("%q not committed within 5s", msg)
}

func TestWorkerExchangeWindow(t *testing.T) {
	ev := func(session string, typ event.Type, rid, msg string) *event.Event {
		return &event.Event{Session: session, Type: typ, RequestID: rid, Message: msg}
	}
	type step struct {
		e *event.Event
		// committed: messages that must be committed before the next
		// step; held: messages that must not be (the window holds them).
		committed, held []string
	}
	for _, tc := range []struct {
		name   string
		window time.Duration
		steps  []step
		// batch: messages that end up in one batch, in this order
		// (seq order within the session).
		batch []string
		keys  int // "e" keys of session a at the end
	}{
		{
			name:   "request and response in one run",
			window: time.Hour,
			steps: []step{
				{e: ev("a", event.Request, "r1", "req")},
				{e: ev("b", event.SessionStart, "", "b-start"), committed: []string{"b-start"}, held: []string{"req"}},
				{e: ev("a", event.Plugin, "r1", "plugin"), held: []string{"req"}},
				{e: ev("a", event.Response, "r1", "resp"), committed: []string{"resp"}},
			},
			batch: []string{"a/1:req", "a/2:plugin", "a/3:resp"},
			keys:  1,
		},
		{
			name:   "concurrent requests keep their order",
			window: time.Hour,
			steps: []step{
				{e: ev("a", event.Request, "r1", "req1")},
				{e: ev("a", event.Request, "r2", "req2")},
				{e: ev("a", event.Response, "r2", "resp2")},
				{e: ev("a", event.SSE, "r2", "sse"), held: []string{"req1", "resp2"}},
				{e: ev("a", event.Error, "r1", "err1"), committed: []string{"err1"}},
			},
			batch: []string{"a/1:req1", "a/2:req2", "a/3:resp2", "a/4:sse", "a/5:err1"},
			keys:  1,
		},
		{
			name:   "window ends without a response",
			window: 150 * time.Millisecond,
			steps: []step{
				{e: ev("a", event.Request, "r1", "req"), held: []string{"req"}},
				{e: ev("a", event.Plugin, "r1", "plugin"), committed: []string{"req", "plugin"}},
				{e: ev("a", event.Response, "r1", "resp"), committed: []string{"resp"}},
			},
			keys: 2,
		},
		{
			name:   "window off",
			window: -1,
			steps: []step{
				{e: ev("a", event.Request, "r1", "req"), committed: []string{"req"}},
				{e: ev("a", event.Response, "r1", "resp"), committed: []string{"resp"}},
			},
			keys: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, t.TempDir())
			defer s.Close()
			var log commitLog
			reg := prometheus.NewRegistry()
			w, err := NewWorker(s, WorkerOptions{FlushInterval: time.Millisecond, ExchangeWindow: tc.window,
				OnCommit: log.onCommit, Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			for i, st := range tc.steps {
				sent := time.Now()
				if !w.Record(st.e) {
					t.Fatalf("step %d: shed", i)
				}
				for _, m := range st.committed {
					log.wait(t, m)
				}
				if len(st.held) > 0 {
					// The worker has taken them, then several flush
					// intervals pass: they are still held, unless this
					// (loaded) box took longer than the window itself.
					for gaugeValue(t, reg, "wasmgate_store_held_events") < float64(len(st.held)) && time.Since(sent) < tc.window {
						if time.Since(sent) > 5*time.Second {
							t.Fatalf("step %d: the held gauge never reached %d", i, len(st.held))
						}
						time.Sleep(time.Millisecond)
					}
					time.Sleep(20 * time.Millisecond)
					if time.Since(sent) >= tc.window {
						t.Logf("step %d: the window passed before the check; not checking that it held", i)
						continue
					}
					for _, m := range st.held {
						if log.has(m) {
							t.Fatalf("step %d: %q committed inside its exchange window", i, m)
						}
					}
				}
			}
			if tc.batch != nil {
				_, first, _ := strings.Cut(tc.batch[0], ":")
				if got := log.batchOf(first); fmt.Sprint(got) != fmt.Sprint(tc.batch) {
					t.Fatalf("batch %v, want %v", got, tc.batch)
				}
			}
			if n := eventKeys(t, s, "a"); n != tc.keys {
				t.Fatalf("%d keys for session a, want %d", n, tc.keys)
			}
		})
	}
}

// TestWorkerCloseReleasesHeld: Close writes what the window holds.
func TestWorkerCloseReleasesHeld(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	w, err := NewWorker(s, WorkerOptions{FlushInterval: time.Millisecond, ExchangeWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		w.Record(&event.Event{Session: fmt.Sprint("s", i), Type: event.Request, RequestID: "r", Message: "req"})
	}
	w.Close()
	for i := range 3 {
		if evs, err := s.Events(fmt.Sprint("s", i), 0, 0); err != nil || len(evs) != 1 {
			t.Fatalf("session s%d: %d events, %v", i, len(evs), err)
		}
	}
}

// TestWorkerHeldCountsAgainstQueue: held events take queue room, so
// requests whose responses never come fill the queue and shed instead of
// growing the held set.
func TestWorkerHeldCountsAgainstQueue(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	w, err := NewWorker(s, WorkerOptions{QueueSize: 4, FlushInterval: time.Millisecond, ExchangeWindow: time.Hour,
		EnqueueTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	shed := 0
	for i := range 20 {
		if !w.Record(&event.Event{Session: fmt.Sprint("s", i), Type: event.Request, RequestID: "r"}) {
			shed++
		}
		time.Sleep(time.Millisecond)
	}
	if shed < 20-2*4 {
		t.Fatalf("%d of 20 shed; want at least %d (4 held, 4 queued)", shed, 20-2*4)
	}
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
