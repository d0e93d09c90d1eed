package store

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/wasmgate/wasmgate/gateway/event"
)

// flakyCommitter commits through the real DB unless failing is set.
type flakyCommitter struct {
	db      *pebble.DB
	failing atomic.Bool
	calls   atomic.Int64
}

var errDiskGone = errors.New("injected: disk gone")

func (c *flakyCommitter) Apply(b *pebble.Batch, o *pebble.WriteOptions) error {
	c.calls.Add(1)
	if c.failing.Load() {
		return errDiskGone
	}
	return c.db.Apply(b, o)
}

func countEvents(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	cursor := ""
	for {
		page, next, err := s.ListSessions(100, cursor)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page {
			evs, err := s.Events(p.ID, 0, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range evs {
				if e.Seq != uint64(i+1) {
					t.Fatalf("session %s: event %d has seq %d", p.ID, i, e.Seq)
				}
			}
			n += len(evs)
		}
		if next == "" {
			return n
		}
		cursor = next
	}
}

// TestWorkerTenThousandAtOnce enqueues 10,000 events from many goroutines at
// once: none is shed, all are written, memory and goroutines come back.
func TestWorkerTenThousandAtOnce(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()

	w, err := NewWorker(s, WorkerOptions{QueueSize: 10000, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	const producers, each = 100, 100
	var wg sync.WaitGroup
	var shed atomic.Int64
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				e := &event.Event{Session: fmt.Sprintf("s%03d", (p*each+i)%500), Type: event.Request,
					Method: "POST", Path: "/mcp", Body: make([]byte, 200)}
				if !w.Record(e) {
					shed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	w.Close()
	if shed.Load() != 0 {
		t.Fatalf("%d events shed with queue_size = total", shed.Load())
	}
	if got := val(w.m.written); got != producers*each {
		t.Fatalf("written counter %v, want %d", got, producers*each)
	}
	if n := countEvents(t, s); n != producers*each {
		t.Fatalf("%d events in the store, want %d", n, producers*each)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	// 10,000 events of ~250 bytes are ~2.5 MB of payload; the memtable is
	// the larger part. Anything past 64 MiB is unbounded growth.
	grow := int64(after.HeapInuse) - int64(before.HeapInuse)
	if grow > 64<<20 {
		t.Fatalf("heap in use grew by %d MiB", grow>>20)
	}
	t.Logf("heap in use after 10,000 events: %+.1f MiB (heap obtained from the OS %.1f MiB)", float64(grow)/(1<<20), float64(after.HeapSys)/(1<<20))
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > goroutines {
		t.Fatalf("goroutines %d after close, %d before", g, goroutines)
	}
}

// TestWorkerInjectedFailure makes every commit fail: events are retried
// with backoff, then counted exhausted; once queue plus retries are full,
// Record sheds after the enqueue timeout and keeps returning promptly.
func TestWorkerInjectedFailure(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	c := &flakyCommitter{db: s.db}
	c.failing.Store(true)
	reg := prometheus.NewRegistry()
	w, err := NewWorker(s, WorkerOptions{
		QueueSize: 100, BatchSize: 10, FlushInterval: time.Millisecond,
		MaxAttempts: 3, RetryBase: 5 * time.Millisecond, RetryCap: 20 * time.Millisecond,
		EnqueueTimeout: 2 * time.Millisecond, Committer: c, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	accepted, shedN := 0, 0
	var slowest time.Duration
	for i := range 2000 {
		start := time.Now()
		ok := w.Record(&event.Event{Session: fmt.Sprint("s", i%7), Type: event.Request})
		slowest = max(slowest, time.Since(start))
		if ok {
			accepted++
		} else {
			shedN++
		}
	}
	// Generous: the bound is enqueue_timeout (2ms); a loaded box adds
	// scheduling delay, never a disk wait.
	if slowest > 500*time.Millisecond {
		t.Errorf("slowest Record took %v with a failing store", slowest)
	}
	if shedN == 0 {
		t.Errorf("nothing shed: 2000 events into a failing store with 100 slots")
	}
	// Let retries run out, then heal the store for the events still queued.
	time.Sleep(150 * time.Millisecond)
	c.failing.Store(false)
	w.Close()

	written := int(val(w.m.written))
	exhausted := int(val(w.m.exhausted))
	retries := val(w.m.retries)
	if exhausted == 0 || retries == 0 {
		t.Fatalf("exhausted %d, retries %v: want both > 0", exhausted, retries)
	}
	if written+exhausted != accepted {
		t.Fatalf("accepted %d = written %d + exhausted %d? events went missing", accepted, written, exhausted)
	}
	if got := int(val(w.m.shed.WithLabelValues("full"))); got != shedN {
		t.Fatalf("shed counter %d, Record returned false %d times", got, shedN)
	}
	if n := countEventsLoose(t, s); n != written {
		t.Fatalf("%d events in the store, worker wrote %d", n, written)
	}
	// Every exhausted event attempted exactly max_attempts times: 3 tries
	// each, 2 of them retries.
	if int(retries) < 2*exhausted {
		t.Fatalf("retries %v < 2 × exhausted %d", retries, exhausted)
	}
	if w.Record(&event.Event{Session: "late", Type: event.Request}) {
		t.Fatal("Record after Close accepted")
	}
}

// countEventsLoose counts events allowing gaps (exhausted numbers).
func countEventsLoose(t *testing.T, s *Store) int {
	t.Helper()
	page, _, err := s.ListSessions(1000, "")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range page {
		evs, err := s.Events(p.ID, 0, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(evs); i++ {
			if evs[i].Seq <= evs[i-1].Seq {
				t.Fatalf("session %s: seq %d after %d", p.ID, evs[i].Seq, evs[i-1].Seq)
			}
		}
		n += len(evs)
	}
	return n
}

// TestWorkerRetryRecovers: a transient failure costs retries, not events.
func TestWorkerRetryRecovers(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	c := &flakyCommitter{db: s.db}
	c.failing.Store(true)
	w, err := NewWorker(s, WorkerOptions{BatchSize: 10, FlushInterval: time.Millisecond,
		RetryBase: 5 * time.Millisecond, RetryCap: 10 * time.Millisecond, Committer: c})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		w.Record(&event.Event{Session: "s", Type: event.Request, Path: fmt.Sprint("/", i)})
	}
	for c.calls.Load() < 3 {
		time.Sleep(time.Millisecond)
	}
	c.failing.Store(false)
	w.Close()
	if ex := val(w.m.exhausted); ex != 0 {
		t.Fatalf("%v exhausted after a transient failure", ex)
	}
	// Numbers were reserved at the first attempt and kept across retries.
	checkNumbered(t, s, "s", 30)
}

// checkNumbered fails unless session holds n events numbered 1..n.
func checkNumbered(t *testing.T, s *Store, session string, n int) {
	t.Helper()
	evs, err := s.Events(session, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != n {
		t.Fatalf("%d events, want %d", len(evs), n)
	}
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d seq %d", i, e.Seq)
		}
	}
}

func TestWorkerCoalesceAndRedact(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	reg := prometheus.NewRegistry()
	w, err := NewWorker(s, WorkerOptions{BatchSize: 100, FlushInterval: 50 * time.Millisecond,
		CaptureBytes: 4, Redact: []string{"authorization", "X-Api-Key"}, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	w.Record(&event.Event{Session: "a", Type: event.Request, Body: []byte("0123456789"),
		Headers: []event.Header{{Name: "Authorization", Value: "Bearer x"}, {Name: "x-api-key", Value: "k"}, {Name: "Accept", Value: "*/*"}}})
	for range 3 {
		w.Record(&event.Event{Session: "a", Type: event.SSE, Stream: "st", EventID: "7", Data: []byte("d")})
	}
	w.Record(&event.Event{Session: "a", Type: event.SSE, Stream: "other", EventID: "7", Data: []byte("d")})
	w.Close()
	evs, _ := s.Events("a", 0, 0)
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3 (duplicate SSE ids on one stream coalesced)", len(evs))
	}
	req := evs[0]
	if string(req.Body) != "0123" || req.BodyBytes != 10 {
		t.Errorf("body %q (%d bytes): capture limit not applied", req.Body, req.BodyBytes)
	}
	if req.Headers[0].Value != Redacted || req.Headers[1].Value != Redacted || req.Headers[2].Value != "*/*" {
		t.Errorf("headers %+v: redaction wrong", req.Headers)
	}
	if got := val(w.m.coalesced); got != 2 {
		t.Errorf("coalesced %v, want 2", got)
	}
	// 5 events would be 5 event keys + 5 touches + 4 index entries (14);
	// written: 3 events + 1 touch + 2 index entries + 1 start index = 7.
	if r := val(w.m.ratio); r < 0.4 {
		t.Errorf("coalesce ratio %v", r)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"wasmgate_store_queue_depth", "wasmgate_store_retry_depth", "wasmgate_store_batch_events",
		"wasmgate_store_commit_seconds", "wasmgate_store_shed_total", "wasmgate_store_coalesce_ratio"} {
		if !names[n] {
			t.Errorf("metric %s not registered", n)
		}
	}
	if w.Record(&event.Event{Type: event.Request}) {
		t.Error("event without a session accepted")
	}
}

// val reads a counter or gauge, or a histogram's count.
func val(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Histogram != nil:
		return float64(d.Histogram.GetSampleCount())
	}
	return d.Gauge.GetValue()
}

// TestWorkerQueueSmallerThanBatch: a batch that cannot fill because the
// queue is smaller is written once the queue is full, not after the flush
// interval.
func TestWorkerQueueSmallerThanBatch(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	w, err := NewWorker(s, WorkerOptions{QueueSize: 4, BatchSize: 50, FlushInterval: time.Hour, EnqueueTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	start := time.Now()
	for i := range 12 {
		if i == 1 {
			time.Sleep(20 * time.Millisecond) // the worker holds event 0 and waits
		}
		if !w.Record(&event.Event{Session: "q", Type: event.Request, Message: fmt.Sprint(i)}) {
			t.Fatalf("event %d shed after %v", i, time.Since(start))
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if evs, _ := s.Events("q", 0, 0); len(evs) >= 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("full batches not written: the worker waits for the flush interval")
		}
	}
}

// syncFailCommitter pipelines commits like the store's own committer, but
// while failing is set every log sync reports an error (after the real
// sync, so the data is in fact there: the retry must not count it twice).
type syncFailCommitter struct {
	dbCommitter
	failing atomic.Bool
	fails   atomic.Int64
}

func (c *syncFailCommitter) SyncWait(b *pebble.Batch) error {
	if err := b.SyncWait(); err != nil {
		return err
	}
	if c.failing.Load() {
		c.fails.Add(1)
		return errDiskGone
	}
	return nil
}

// TestWorkerSyncFailureRetries: a batch applied to the memtable whose log
// sync fails is retried like a failed commit; once syncs succeed again
// every event is stored once, numbered in order, counted once in its
// session's metadata, and reported to OnCommit only after its sync.
func TestWorkerSyncFailureRetries(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	c := &syncFailCommitter{dbCommitter: dbCommitter{s.db}}
	c.failing.Store(true)
	var committed atomic.Int64
	w, err := NewWorker(s, WorkerOptions{BatchSize: 10, FlushInterval: time.Millisecond,
		RetryBase: 5 * time.Millisecond, RetryCap: 10 * time.Millisecond, Committer: c,
		OnCommit: func(evs []*event.Event) {
			if c.failing.Load() {
				t.Errorf("OnCommit with %d events while every sync fails", len(evs))
			}
			committed.Add(int64(len(evs)))
		}})
	if err != nil {
		t.Fatal(err)
	}
	if w.async == nil {
		t.Fatal("the committer pipelines, but the worker commits synchronously")
	}
	for i := range 30 {
		w.Record(&event.Event{Session: "s", Type: event.Request, Path: fmt.Sprint("/", i)})
	}
	for c.fails.Load() < 3 {
		time.Sleep(time.Millisecond)
	}
	c.failing.Store(false)
	w.Close()
	if ex := val(w.m.exhausted); ex != 0 {
		t.Fatalf("%v exhausted after transient sync failures", ex)
	}
	if r := val(w.m.retries); r == 0 {
		t.Fatal("no retries counted for failed syncs")
	}
	if n := committed.Load(); n != 30 {
		t.Fatalf("OnCommit saw %d events, want 30", n)
	}
	checkNumbered(t, s, "s", 30)
	info, ok, err := s.Session("s")
	if err != nil || !ok {
		t.Fatalf("session: %v %v", ok, err)
	}
	if info.Events != 30 || info.LastSeq != 30 {
		t.Fatalf("metadata counts %d events, last seq %d; want 30, 30", info.Events, info.LastSeq)
	}
}

// TestWorkerGroupCommit: with a minimum interval between log syncs,
// batches committed meanwhile share a sync, and every event is written.
func TestWorkerGroupCommit(t *testing.T) {
	s, err := Open(t.TempDir(), Options{MinSyncInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w, err := NewWorker(s, WorkerOptions{BatchSize: 10, EnqueueTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	for i := range n {
		w.Record(&event.Event{Session: fmt.Sprint("s", i%50), Type: event.Request})
	}
	w.Close()
	batches := uint64(val(w.m.batchSize))
	syncs := s.walSyncs()
	if got := int(val(w.m.written)); got != n {
		t.Fatalf("%d events written, want %d", got, n)
	}
	if got := countEvents(t, s); got != n {
		t.Fatalf("%d events stored, want %d", got, n)
	}
	// 200 batches at most 64 in flight, a sync per 20ms: without group
	// commit there is a sync per batch.
	if syncs == 0 || syncs*2 > batches {
		t.Fatalf("%d log syncs for %d batches: batches do not share syncs", syncs, batches)
	}
	t.Logf("%d batches, %d syncs", batches, syncs)
}

// TestWorkerSyncFailureForgottenSession: a batch that ends its session
// writes the session's metadata record, so the writer forgets the session
// once the batch is applied; when that batch's sync then fails, its retry
// reloads the session from the record, which already counts the batch,
// and must not count it again.
func TestWorkerSyncFailureForgottenSession(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	c := &syncFailCommitter{dbCommitter: dbCommitter{s.db}}
	c.failing.Store(true)
	w, err := NewWorker(s, WorkerOptions{FlushInterval: time.Millisecond, ExchangeWindow: -1,
		RetryBase: 20 * time.Millisecond, Committer: c})
	if err != nil {
		t.Fatal(err)
	}
	w.Record(&event.Event{Session: "s", Type: event.Request, Path: "/"})
	w.Record(&event.Event{Session: "s", Type: event.SessionEnd})
	for c.fails.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	c.failing.Store(false)
	w.Close()
	if ex := val(w.m.exhausted); ex != 0 {
		t.Fatalf("%v exhausted", ex)
	}
	checkNumbered(t, s, "s", 2)
	info, _, err := s.Session("s")
	if err != nil || info.Events != 2 || info.LastSeq != 2 {
		t.Fatalf("Session: %+v, %v; want 2 events", info, err)
	}
	evs, err := s.Events("s", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var bytes uint64
	for _, e := range evs {
		bytes += eventBytes("s", len(appendEvent(nil, e)))
	}
	if info.Bytes != bytes {
		t.Fatalf("Session bytes %d, want %d", info.Bytes, bytes)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.sessions["s"]; ok && st.pending != 0 {
		t.Fatalf("session state pending %d after everything committed", st.pending)
	}
}

// landedCommitter applies every batch but reports the first fails of them
// failed, as a commit whose acknowledgement was lost would be.
type landedCommitter struct {
	db    *pebble.DB
	fails atomic.Int64
}

func (c *landedCommitter) Apply(b *pebble.Batch, o *pebble.WriteOptions) error {
	if err := c.db.Apply(b, o); err != nil {
		return err
	}
	if c.fails.Add(-1) >= 0 {
		return errDiskGone
	}
	return nil
}

// TestWorkerRetryLandedBatches: batches that landed but reported failure
// are retried from the retry heap, grouped into runs differently; every
// event still reads back once, in the order recorded, and its session's
// metadata counts it once.
func TestWorkerRetryLandedBatches(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	c := &landedCommitter{db: s.db}
	c.fails.Store(16)
	w, err := NewWorker(s, WorkerOptions{BatchSize: 7, FlushInterval: time.Millisecond, MaxAttempts: 20,
		RetryBase: time.Millisecond, RetryCap: 2 * time.Millisecond, EnqueueTimeout: time.Second, Committer: c})
	if err != nil {
		t.Fatal(err)
	}
	const sessions, each = 3, 60
	for i := range each {
		for j := range sessions {
			if !w.Record(&event.Event{Session: fmt.Sprint("s", j), Type: event.Plugin, Message: fmt.Sprint(i)}) {
				t.Fatal("shed")
			}
		}
		if i%3 == 0 {
			// Batches of different sizes, so that a retry batch takes
			// the events of one failed batch and part of the next.
			time.Sleep(2 * time.Millisecond)
		}
	}
	w.Close()
	if r := val(w.m.retries); r == 0 {
		t.Fatal("no batch was retried")
	}
	if ex := val(w.m.exhausted); ex != 0 {
		t.Fatalf("%v exhausted", ex)
	}
	for j := range sessions {
		id := fmt.Sprint("s", j)
		evs, err := s.Events(id, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var bytes uint64
		for i, e := range evs {
			if e.Seq != uint64(i+1) || e.Message != fmt.Sprint(i) {
				t.Fatalf("%s: event %d is seq %d %q", id, i, e.Seq, e.Message)
			}
			bytes += eventBytes(id, len(appendEvent(nil, e)))
		}
		if len(evs) != each {
			t.Fatalf("%s: %d events, want %d", id, len(evs), each)
		}
		info, _, err := s.Session(id)
		if err != nil || info.Events != each || info.LastSeq != each || info.Bytes != bytes {
			t.Fatalf("Session(%s) = %+v, %v; want %d events, %d bytes", id, info, err, each, bytes)
		}
	}
}

// instantSyncCommitter pipelines commits, but its sync returns at once
// (the batch is applied without one): the test then decides when the
// worker is busy, not the disk.
type instantSyncCommitter struct {
	db      *pebble.DB
	onApply func(n int)
	applies int
}

func (c *instantSyncCommitter) Apply(b *pebble.Batch, _ *pebble.WriteOptions) error {
	return c.ApplyNoSyncWait(b, nil)
}

func (c *instantSyncCommitter) ApplyNoSyncWait(b *pebble.Batch, _ *pebble.WriteOptions) error {
	c.applies++
	c.onApply(c.applies)
	return c.db.Apply(b, pebble.NoSync)
}

func (c *instantSyncCommitter) SyncWait(*pebble.Batch) error { return nil }

// TestWorkerSettlesWhileBusy: a batch whose sync is done is reported
// committed (OnCommit, the written counter) while the worker goes on with
// more batches, not only once it is idle or SyncDepth batches wait.
func TestWorkerSettlesWhileBusy(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	const n = 4
	var committed atomic.Int64
	var w *Worker
	c := &instantSyncCommitter{db: s.db}
	c.onApply = func(i int) {
		switch {
		case i == 1:
			// Hold the first batch until all events are queued, so that
			// the worker never waits for an event.
			for deadline := time.Now().Add(5 * time.Second); len(w.queue) < n-1 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
		case i == 2:
			// The first batch's sync is done and back from the syncer.
			for deadline := time.Now().Add(5 * time.Second); len(w.synced) == 0 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
		case i == n:
			if committed.Load() == 0 {
				t.Errorf("batch %d applied, none of the %d before it reported committed", i, i-1)
			}
		}
	}
	var err error
	w, err = NewWorker(s, WorkerOptions{BatchSize: 1, ExchangeWindow: -1, Committer: c,
		OnCommit: func(evs []*event.Event) { committed.Add(int64(len(evs))) }})
	if err != nil {
		t.Fatal(err)
	}
	if w.async == nil {
		t.Fatal("commits not pipelined")
	}
	for i := range n {
		w.Record(&event.Event{Session: "s", Type: event.Plugin, Message: fmt.Sprint(i)})
	}
	w.Close()
	if got := committed.Load(); got != n {
		t.Fatalf("%d events reported committed, want %d", got, n)
	}
}

// gateCommitter pipelines commits; the first sync waits for proceed and
// then fails (after the real sync), the others succeed.
type gateCommitter struct {
	dbCommitter
	applied, proceed chan struct{}
	calls            atomic.Int64
}

func (c *gateCommitter) SyncWait(b *pebble.Batch) error {
	if err := b.SyncWait(); err != nil {
		return err
	}
	if c.calls.Add(1) == 1 {
		close(c.applied)
		<-c.proceed
		return errDiskGone
	}
	return nil
}

// TestWorkerSyncFailureAfterDelete: a session deleted while its batch
// waits for a sync that then fails gets that batch's event back by the
// retry, and a later event of it a number above the retried one instead
// of the same number.
func TestWorkerSyncFailureAfterDelete(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	c := &gateCommitter{dbCommitter: dbCommitter{s.db}, applied: make(chan struct{}), proceed: make(chan struct{})}
	var log commitLog
	w, err := NewWorker(s, WorkerOptions{FlushInterval: time.Millisecond, ExchangeWindow: -1,
		RetryBase: 5 * time.Millisecond, Committer: c, OnCommit: log.onCommit})
	if err != nil {
		t.Fatal(err)
	}
	w.Record(&event.Event{Session: "s", Type: event.Plugin, Message: "first"})
	<-c.applied
	if found, err := s.DeleteSession("s"); err != nil || !found {
		t.Fatalf("DeleteSession: %v %v", found, err)
	}
	close(c.proceed)
	log.wait(t, "first")
	w.Record(&event.Event{Session: "s", Type: event.Plugin, Message: "second"})
	w.Close()
	evs, err := s.Events("s", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%d:%s", e.Seq, e.Message))
	}
	if fmt.Sprint(got) != "[1:first 2:second]" {
		t.Fatalf("events %v, want [1:first 2:second]", got)
	}
}

// TestWorkerReleasesEvents checks the worker's side of the event
// ownership rule (package event): every pooled event it is given is
// released once written, coalesced away, shed or exhausted, and nothing
// the store keeps (the session state, its metadata) refers to an event's
// storage, which the next event reuses. The producer here keeps even the
// session id and route in the event's storage, and scribbles over reused
// storage between rounds.
func TestWorkerReleasesEvents(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	c := &flakyCommitter{db: s.db}
	w, err := NewWorker(s, WorkerOptions{BatchSize: 8, FlushInterval: time.Millisecond, MaxAttempts: 1,
		EnqueueTimeout: time.Second, Committer: c})
	if err != nil {
		t.Fatal(err)
	}
	newEvent := func(session string, typ event.Type, i int) *event.Event {
		e := event.New()
		e.Session = e.KeepString([]byte(session))
		e.Route = e.KeepString([]byte("route-" + session))
		e.Type = typ
		e.RequestID = e.KeepString(fmt.Appendf(nil, "req-%d", i))
		e.AddHeader([]byte("X-N"), fmt.Appendf(nil, "%d", i))
		e.Body = e.Keep(fmt.Appendf(nil, "body-%d", i))
		if typ == event.SSE {
			e.Stream, e.EventID = "st", "dup" // all but the first coalesce
		}
		return e
	}
	// Warm the pool: events with room enough that what the producer keeps
	// is written into storage a released event had, not into a fresh array.
	warm := make([]*event.Event, 256)
	for i := range warm {
		warm[i] = event.New()
		warm[i].Keep(make([]byte, 256))
	}
	for _, e := range warm {
		e.Release()
	}
	var given []*event.Event
	scribble := func() {
		for range 64 {
			e := event.New()
			for range 32 { // byte by byte: in place, not in a grown copy
				e.Keep([]byte{'X'})
			}
			defer e.Release()
		}
	}
	record := func(e *event.Event) {
		given = append(given, e)
		w.Record(e)
	}
	const n = 40
	for round := range 2 {
		for i := range n {
			typ := event.Request
			if i%5 == 4 {
				typ = event.SSE
			}
			record(newEvent(fmt.Sprint("s", i%4), typ, round*n+i))
		}
		waitFor(t, func() bool { return int(val(w.m.written)+val(w.m.coalesced)) == len(given) })
		scribble()
	}
	// A failing commit with one attempt exhausts the event.
	c.failing.Store(true)
	record(newEvent("s0", event.Request, 1000))
	waitFor(t, func() bool { return val(w.m.exhausted) == 1 })
	c.failing.Store(false)
	w.Close()
	record(newEvent("s0", event.Request, 1001)) // shed: closed
	for i, e := range given {
		if e.Session != "" || len(e.Headers) != 0 || e.RequestID != "" {
			t.Fatalf("event %d not released: %+v", i, e)
		}
	}
	scribble()
	s.mu.Lock()
	for id, st := range s.sessions {
		if len(id) != 2 || id[0] != 's' || st.meta.Route != "" && st.meta.Route != "route-"+id {
			t.Errorf("session state %q (id %q, route %q) holds a released event's bytes", id, st.id, st.meta.Route)
		}
	}
	s.mu.Unlock()
	for i := range 4 {
		id := fmt.Sprint("s", i)
		info, ok, err := s.Session(id)
		if err != nil || !ok {
			t.Fatalf("session %s: %v %v", id, ok, err)
		}
		if info.Route != "route-"+id {
			t.Errorf("session %s route %q", id, info.Route)
		}
		evs, err := s.Events(id, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			want := e.RequestID[len("req-"):]
			if len(e.Headers) != 1 || e.Headers[0].Value != want || string(e.Body) != "body-"+want {
				t.Errorf("session %s seq %d: request id %q, headers %+v, body %q", id, e.Seq, e.RequestID, e.Headers, e.Body)
			}
		}
	}
	if got := countEventsLoose(t, s); got != int(val(w.m.written)) {
		t.Errorf("%d events stored, %v written", got, val(w.m.written))
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
