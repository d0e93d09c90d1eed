package store

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/wasmgate/wasmgate/gateway/event"
)

// chaosCommitter pipelines commits like the store's own committer, but
// fails every 7th apply and reports every 5th log sync failed (after the
// real sync: the data is there, and the retry rewrites it).
type chaosCommitter struct {
	dbCommitter
	n atomic.Int64
}

func (c *chaosCommitter) ApplyNoSyncWait(b *pebble.Batch, o *pebble.WriteOptions) error {
	if c.n.Add(1)%7 == 0 {
		return errDiskGone
	}
	return c.dbCommitter.ApplyNoSyncWait(b, o)
}

func (c *chaosCommitter) SyncWait(b *pebble.Batch) error {
	if err := b.SyncWait(); err != nil {
		return err
	}
	if c.n.Add(1)%5 == 0 {
		return errDiskGone
	}
	return nil
}

// TestWorkerPooledEventsUnderFailures records pooled events from four
// producers (every string and slice, the session id included, kept in the
// event's own storage) while a fifth goroutine keeps taking released
// events and scribbling over their storage, through failing applies and
// syncs, retries, SSE coalescing, the exchange window and pipelined
// syncs. Every stored event must be intact (its fields agree with each
// other) and every event OnCommit reported must be stored: a store or
// worker that kept or wrote an event's bytes after releasing it shows as a
// corrupt or missing event.
func TestWorkerPooledEventsUnderFailures(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	c := &chaosCommitter{dbCommitter: dbCommitter{s.db}}
	var mu sync.Mutex
	committed := map[string]string{}
	w, err := NewWorker(s, WorkerOptions{BatchSize: 16, FlushInterval: time.Millisecond, QueueSize: 4000,
		MaxAttempts: 50, RetryBase: time.Millisecond, RetryCap: 2 * time.Millisecond, SyncDepth: 4,
		ExchangeWindow: 2 * time.Millisecond, EnqueueTimeout: time.Second, Committer: c,
		OnCommit: func(evs []*event.Event) {
			mu.Lock()
			for _, e := range evs {
				committed[fmt.Sprintf("%s:%d", e.Session, e.Seq)] = e.RequestID + "|" + string(e.Body)
			}
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var scr sync.WaitGroup
	scr.Add(1)
	go func() { // reuses released events as fast as it can
		defer scr.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			e := event.New()
			for range 64 {
				e.Keep([]byte("ZZZZZZZZ"))
			}
			e.Release()
		}
	}()
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(p), 1))
			for i := range 1500 {
				sess := fmt.Sprintf("p%d-s%d", p, r.IntN(8))
				id := fmt.Sprintf("%s-r%d", sess, i)
				types := []event.Type{event.Request, event.Response, event.SSE}
				if i%4 == 0 {
					types = append(types, event.SSE) // sent again: coalesced in one batch
				}
				for _, typ := range types {
					e := event.New()
					e.Session = e.KeepString([]byte(sess))
					e.Route = e.KeepString([]byte("route-" + sess))
					e.Type = typ
					e.RequestID = e.KeepString([]byte(id))
					e.Method = e.KeepString([]byte("POST"))
					e.Path = e.KeepString([]byte("/" + id))
					e.AddHeader([]byte("X-Id"), []byte(id))
					e.Body = e.Keep([]byte("body-" + id))
					if typ == event.SSE {
						e.Stream = e.KeepString([]byte("st"))
						e.EventID = e.KeepString([]byte(id))
						e.Data = e.Keep([]byte("data-" + id))
					}
					w.Record(e)
				}
			}
		}()
	}
	wg.Wait()
	w.Close()
	close(stop)
	scr.Wait()
	bad := 0
	page, _, err := s.ListSessions(1000, "")
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for _, info := range page {
		if info.Route != "route-"+info.ID {
			t.Errorf("session %s route %q", info.ID, info.Route)
		}
		evs, err := s.Events(info.ID, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			id := e.RequestID
			stored[fmt.Sprintf("%s:%d", e.Session, e.Seq)] = true
			ok := strings.HasPrefix(id, info.ID+"-r") && e.Route == "route-"+info.ID && e.Path == "/"+id &&
				string(e.Body) == "body-"+id && len(e.Headers) == 1 && e.Headers[0].Value == id && e.Method == "POST"
			if e.Type == event.SSE {
				ok = ok && e.EventID == id && e.Stream == "st" && string(e.Data) == "data-"+id
			}
			if !ok && bad < 10 {
				t.Errorf("session %s seq %d corrupt: %+v", info.ID, e.Seq, e)
			}
			if !ok {
				bad++
			}
		}
	}
	missing := 0
	for k, v := range committed {
		if !stored[k] {
			if missing++; missing <= 5 {
				t.Errorf("committed %s (%s) missing", k, v)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d committed events missing", missing, len(committed))
	}
	if val(w.m.retries) == 0 || val(w.m.coalesced) == 0 || len(committed) == 0 {
		t.Errorf("retries %v, coalesced %v, %d committed: not exercised", val(w.m.retries), val(w.m.coalesced), len(committed))
	}
}
