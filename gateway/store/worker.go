package store

import (
	"container/heap"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/event"
)

// WorkerOptions configure a Worker. Zero values take the defaults of the
// storage section (docs/config.md).
type WorkerOptions struct {
	QueueSize      int           // default 10,000; also bounds the events taken but not yet written
	BatchSize      int           // default 50
	FlushInterval  time.Duration // default 10ms
	NoSync         bool          // default false: every commit is synced
	MaxAttempts    int           // default 5
	RetryBase      time.Duration // default 100ms
	RetryCap       time.Duration // default 5s
	EnqueueTimeout time.Duration // default 5ms
	// CaptureBytes truncates request bodies (0: no limit). The proxy
	// already does; the worker does it again so no path records more. SSE
	// data is left alone: replay needs whole events, and the proxy bounds
	// them (sse.max_event_bytes, sessions.capture_body_bytes).
	CaptureBytes int
	// Redact lists header names (any case) whose values are recorded as
	// "[redacted]"; applied again here for the same reason.
	Redact []string
	// SyncDepth bounds the batches applied but not yet synced (default 64;
	// 1 commits one batch at a time). See Worker.
	SyncDepth int
	// ExchangeWindow is how long a session's events wait while one of its
	// requests has no response yet (default 10ms; negative: no wait).
	// The request and its response then go into one batch, which writes
	// them as one run (one memtable insert instead of two). Events are
	// written in the order recorded either way.
	ExchangeWindow time.Duration
	// Committer commits batches (nil: the store itself). A committer that
	// is also an [AsyncCommitter] gets synced batches pipelined.
	Committer BatchCommitter
	// OnCommit, if set, is called by the worker goroutine after each
	// successful commit with the events it made durable. The slice and
	// events must not be retained: the worker releases the events after
	// the call (see package event).
	OnCommit   func([]*event.Event)
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// WorkerOptionsFrom builds WorkerOptions from the configuration.
func WorkerOptionsFrom(st config.Storage, ss config.Sessions) WorkerOptions {
	return WorkerOptions{
		QueueSize:      st.QueueSize,
		BatchSize:      st.BatchSize,
		SyncDepth:      st.SyncDepth,
		ExchangeWindow: exchangeWindow(st.ExchangeWindow),
		FlushInterval:  time.Duration(st.FlushInterval),
		NoSync:         !st.Sync,
		MaxAttempts:    st.MaxAttempts,
		RetryBase:      time.Duration(st.RetryBase),
		RetryCap:       time.Duration(st.RetryCap),
		EnqueueTimeout: time.Duration(st.EnqueueTimeout),
		CaptureBytes:   int(ss.CaptureBodyBytes),
		Redact:         ss.Redact,
	}
}

// exchangeWindow maps storage.exchange_window, where 0 turns the window
// off, to WorkerOptions.ExchangeWindow, where 0 is the default.
func exchangeWindow(d config.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return time.Duration(d)
}

func (o *WorkerOptions) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.QueueSize, 10000)
	def(&o.BatchSize, 50)
	def(&o.SyncDepth, 64)
	def(&o.MaxAttempts, 5)
	defd(&o.FlushInterval, 10*time.Millisecond)
	if o.ExchangeWindow == 0 {
		o.ExchangeWindow = 10 * time.Millisecond
	}
	defd(&o.RetryBase, 100*time.Millisecond)
	defd(&o.RetryCap, 5*time.Second)
	defd(&o.EnqueueTimeout, 5*time.Millisecond)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Redacted is the value recorded in place of a redacted header's.
const Redacted = event.Redacted

// AsyncCommitter starts a synced commit without waiting for the sync
// (ApplyNoSyncWait) and later waits for it (SyncWait). The store's own
// committer is one.
type AsyncCommitter interface {
	ApplyNoSyncWait(b *pebble.Batch, opts *pebble.WriteOptions) error
	SyncWait(b *pebble.Batch) error
}

// dbCommitter is the store's committer: Pebble's, with SyncWait on the
// batch.
type dbCommitter struct{ *pebble.DB }

func (dbCommitter) SyncWait(b *pebble.Batch) error { return b.SyncWait() }

// noSyncWait adapts an AsyncCommitter's first half to BatchCommitter, for
// Store.commitEvents.
type noSyncWait struct{ AsyncCommitter }

func (c noSyncWait) Apply(b *pebble.Batch, wo *pebble.WriteOptions) error {
	return c.ApplyNoSyncWait(b, wo)
}

// Worker is the event.Sink that persists session events: a bounded queue
// drained by one goroutine into batched, synced Pebble commits, with a
// retry heap for failed batches. See the package documentation.
//
// With sync on, commits are pipelined: the worker applies a batch to the
// memtable and the write-ahead log, hands it to a syncer goroutine that
// waits for the log sync, and goes on with the next batch; Pebble syncs
// everything written so far at once, so batches that arrive while a sync
// runs share the next one (group commit). At most SyncDepth batches wait
// for their sync. A batch counts as written, and OnCommit sees it, only
// once its sync succeeded; a failed sync sends its events to the retry
// heap like a failed commit. The in-memory session state moves when the
// batch is applied: readers already see it in the memtable, and a batch
// whose sync fails is rewritten under the same keys.
type Worker struct {
	store  *Store
	opts   WorkerOptions
	commit BatchCommitter
	async  AsyncCommitter // nil: commits wait for their own sync
	wo     *pebble.WriteOptions
	log    *slog.Logger
	redact event.HeaderSet
	m      *workerMetrics

	queue chan *event.Event
	// full (capacity 1) wakes the worker when fullAt events are queued:
	// the rest of a batch (or as much as the queue holds).
	full   chan struct{}
	fullAt int

	// closeMu makes Close and Record exclusive: once closed is set under
	// the write lock, no Record is between its check and its send.
	closeMu sync.RWMutex
	closed  bool
	closing chan struct{}
	done    chan struct{}

	retryDepth atomic.Int64 // mirrors retry.Len() for the gauge
	heldDepth  atomic.Int64 // mirrors heldEvents for the gauge

	// Owned by the worker goroutine.
	retry   retryHeap
	scratch writeScratch
	// metaRetry: no metadata-only commit before then (one just failed).
	metaRetry time.Time
	dedup     map[sseIdentity]struct{}
	evs       []*event.Event
	items     []item

	// Exchange window (ExchangeWindow > 0): held maps a session with a
	// request awaiting its response to its events so far; heldOrder
	// lists them by when their wait began (so by deadline; entries already
	// released are skipped). A released session's events move to ready,
	// which batches take from before the queue. heldEvents and the ready
	// events count against the queue size.
	held       map[string]*heldSession
	heldOrder  []*heldSession
	heldHead   int
	heldEvents int
	heldFree   []*heldSession
	ready      []item
	readyHead  int
	draining   bool // Close: writing what is left

	// Pipelined commits (async != nil): the worker sends applied batches
	// on syncing and receives them back on synced; unsynced counts those
	// between the two (at most SyncDepth, the capacity of both channels,
	// so neither side ever blocks the other for good) and unsyncedEvents
	// their events, which count against the queue size.
	syncing        chan *pendingBatch
	synced         chan *pendingBatch
	syncerDone     chan struct{}
	unsynced       int
	unsyncedEvents int
	spare          []*pendingBatch
}

// pendingBatch is a batch applied but not yet known to be durable.
type pendingBatch struct {
	b     *pebble.Batch
	items []item
	keys  int
	dups  int
	final bool
	start time.Time
	err   error
	evs   []*event.Event
}

// heldSession is a session's events held by the exchange window.
type heldSession struct {
	session  string
	since    time.Time
	evs      []*event.Event
	open     []string // request ids without a response yet
	released bool
}

// item is an event in a batch with the attempts already made for it.
type item struct {
	ev       *event.Event
	attempts int
}

type sseIdentity struct{ session, stream, id string }

// NewWorker starts a worker writing to s.
func NewWorker(s *Store, opts WorkerOptions) (*Worker, error) {
	if s.readOnly {
		return nil, errors.New("start recorder: store opened read-only")
	}
	opts.setDefaults()
	m, err := newWorkerMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	w := &Worker{
		store:   s,
		opts:    opts,
		commit:  opts.Committer,
		wo:      pebble.Sync,
		log:     opts.Logger,
		m:       m,
		queue:   make(chan *event.Event, opts.QueueSize),
		full:    make(chan struct{}, 1),
		fullAt:  min(opts.BatchSize, opts.QueueSize) - 1,
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		dedup:   make(map[sseIdentity]struct{}),
		held:    make(map[string]*heldSession),
	}
	if w.commit == nil {
		w.commit = dbCommitter{s.db}
	}
	if opts.NoSync {
		w.wo = pebble.NoSync
	} else if a, ok := w.commit.(AsyncCommitter); ok && opts.SyncDepth > 1 {
		w.async = a
		w.syncing = make(chan *pendingBatch, opts.SyncDepth)
		w.synced = make(chan *pendingBatch, opts.SyncDepth)
		w.syncerDone = make(chan struct{})
		go w.syncer()
	}
	w.redact = event.NewHeaderSet(opts.Redact)
	if opts.Registerer != nil {
		if err := m.registerGauges(opts.Registerer,
			func() float64 { return float64(len(w.queue)) },
			func() float64 { return float64(w.retryDepth.Load()) },
			func() float64 { return float64(w.heldDepth.Load()) }); err != nil {
			return nil, err
		}
	}
	go w.run()
	return w, nil
}

// Record queues e for writing. It waits at most the enqueue timeout for
// room and returns false when the event was shed (queue full, worker
// closed, or an event without a usable session id). The worker releases
// e (event.Event.Release) once it is written, shed, dropped as a
// duplicate or out of attempts: after its OnCommit call for a written one.
func (w *Worker) Record(e *event.Event) bool {
	if e == nil || e.Session == "" || len(e.Session) > MaxSessionIDLen {
		return w.shed(e, "invalid")
	}
	e.Seq = 0
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	w.closeMu.RLock()
	defer w.closeMu.RUnlock()
	if w.closed {
		return w.shed(e, "closed")
	}
	select {
	case w.queue <- e:
		w.signalFull()
		return true
	default:
	}
	w.m.enqueueWaits.Inc()
	t := time.NewTimer(w.opts.EnqueueTimeout)
	defer t.Stop()
	select {
	case w.queue <- e:
		w.signalFull()
		return true
	case <-t.C:
		return w.shed(e, "full")
	}
}

// shed counts e as shed for reason and releases it; it returns false,
// Record's answer.
func (w *Worker) shed(e *event.Event, reason string) bool {
	w.m.shed.WithLabelValues(reason).Inc()
	e.Release()
	return false
}

var _ event.Sink = (*Worker)(nil)

// signalFull wakes a worker waiting for its batch to fill once the queue
// holds the rest of a batch (the worker holds the first event).
func (w *Worker) signalFull() {
	if len(w.queue) >= w.fullAt {
		select {
		case w.full <- struct{}{}:
		default:
		}
	}
}

// Close stops accepting events, writes everything queued (events waiting
// for a retry get one last attempt) and stops the worker. It does not close
// the store.
func (w *Worker) Close() error {
	w.closeMu.Lock()
	already := w.closed
	w.closed = true
	w.closeMu.Unlock()
	if !already {
		close(w.closing)
	}
	<-w.done
	return nil
}

func (w *Worker) run() {
	defer close(w.done)
	retryTimer := time.NewTimer(time.Hour)
	retryTimer.Stop()
	flushTimer := time.NewTimer(time.Hour)
	flushTimer.Stop()
	metaTimer := time.NewTimer(time.Hour)
	metaTimer.Stop()
	holdTimer := time.NewTimer(time.Hour)
	holdTimer.Stop()
	for {
		w.items = w.items[:0]
		w.settleSynced()
		now := time.Now()
		w.takeDue(now)
		w.releaseDue(now)
		w.fill()
		if len(w.items) == 0 {
			// Idle: wait for an event, a due retry, the end of an exchange
			// window or Close.
			var retryC, metaC, holdC <-chan time.Time
			if w.retry.Len() > 0 {
				retryTimer.Reset(time.Until(w.retry[0].due))
				retryC = retryTimer.C
			}
			if h := w.firstHeld(); h != nil {
				holdTimer.Reset(time.Until(h.since.Add(w.opts.ExchangeWindow)))
				holdC = holdTimer.C
			}
			if since, ok := w.store.hasDirty(); ok {
				due := time.Unix(0, since).Add(metaInterval)
				if due.Before(w.metaRetry) {
					due = w.metaRetry
				}
				metaTimer.Reset(time.Until(due))
				metaC = metaTimer.C
			}
			select {
			case e := <-w.queueIfRoom():
				w.admit(e)
			case <-retryC:
				w.takeDue(time.Now())
			case <-holdC:
				w.releaseDue(time.Now())
			case <-metaC:
				w.flushMeta(false)
			case p := <-w.synced:
				w.settle(p)
			case <-w.closing:
				retryTimer.Stop()
				metaTimer.Stop()
				holdTimer.Stop()
				w.drain()
				return
			}
			retryTimer.Stop()
			metaTimer.Stop()
			holdTimer.Stop()
			if len(w.items) == 0 {
				continue
			}
		}
		w.fill()
		if len(w.items) < w.opts.BatchSize && w.room() {
			// Wait up to flush_interval for the batch to fill. Record
			// wakes the worker once the queue holds a batch, not for every
			// event: a wake-up per event cost more CPU than the commit.
			select {
			case <-w.full: // stale: sent while the last batch was written
			default:
			}
			if len(w.queue) < w.fullAt+1-len(w.items) {
				flushTimer.Reset(w.opts.FlushInterval)
			wait:
				for {
					select {
					case <-w.full:
					case <-flushTimer.C:
					case <-w.closing:
					case p := <-w.synced:
						w.settle(p)
						continue
					}
					break wait
				}
				flushTimer.Stop()
			}
			w.releaseDue(time.Now())
			w.fill()
		}
		w.flush(false)
	}
}

// room reports whether the worker may take more new events: events in
// flight (batch, unsynced batches, retry heap, held and released by the
// exchange window) are bounded by the queue size, so a failing store turns
// into a full queue and sheds instead of growing. With the queue itself,
// at most twice the queue size is in memory.
func (w *Worker) room() bool {
	if w.draining {
		return true // Close: no more events can come
	}
	return len(w.items)+w.unsyncedEvents+w.retry.Len()+w.heldEvents+len(w.ready)-w.readyHead < w.opts.QueueSize
}

func (w *Worker) queueIfRoom() <-chan *event.Event {
	if w.room() {
		return w.queue
	}
	return nil
}

// fill takes released and queued events without waiting until the batch
// is full.
func (w *Worker) fill() {
	for len(w.items) < w.opts.BatchSize {
		if w.readyHead < len(w.ready) {
			w.items = append(w.items, w.ready[w.readyHead])
			w.ready[w.readyHead] = item{}
			if w.readyHead++; w.readyHead == len(w.ready) {
				w.ready, w.readyHead = w.ready[:0], 0
			}
			continue
		}
		if !w.room() {
			return
		}
		select {
		case e := <-w.queue:
			w.admit(e)
		default:
			return
		}
	}
}

// admit takes a new event into the batch, or holds it: a request starts
// its session's exchange window, and while the window is open the
// session's events wait with it, in order, until every request in it has
// its response (or error) or the window ends.
func (w *Worker) admit(e *event.Event) {
	h := w.held[e.Session]
	if h == nil {
		if w.opts.ExchangeWindow <= 0 || e.Type != event.Request || e.RequestID == "" {
			w.items = append(w.items, item{ev: e})
			return
		}
		if n := len(w.heldFree); n > 0 {
			h, w.heldFree = w.heldFree[n-1], w.heldFree[:n-1]
		} else {
			h = &heldSession{}
		}
		h.session, h.since, h.released = e.Session, time.Now(), false
		w.held[e.Session] = h
		w.heldOrder = append(w.heldOrder, h)
	}
	h.evs = append(h.evs, e)
	w.heldEvents++
	switch e.Type {
	case event.Request:
		if e.RequestID != "" {
			h.open = append(h.open, e.RequestID)
		}
	case event.Response, event.Error:
		for i, id := range h.open {
			if id == e.RequestID {
				h.open = append(h.open[:i], h.open[i+1:]...)
				if len(h.open) == 0 {
					w.release(h)
				}
				break
			}
		}
	}
	w.heldDepth.Store(int64(w.heldEvents))
}

// release ends h's window: its events go to ready, in order.
func (w *Worker) release(h *heldSession) {
	for _, e := range h.evs {
		w.ready = append(w.ready, item{ev: e})
	}
	w.heldEvents -= len(h.evs)
	w.heldDepth.Store(int64(w.heldEvents))
	delete(w.held, h.session)
	clear(h.evs)
	clear(h.open)
	h.evs, h.open, h.released = h.evs[:0], h.open[:0], true
}

// firstHeld is the held session whose window ends first (nil if none),
// dropping released entries from the front of heldOrder.
func (w *Worker) firstHeld() *heldSession {
	for w.heldHead < len(w.heldOrder) {
		h := w.heldOrder[w.heldHead]
		if !h.released {
			return h
		}
		w.heldOrder[w.heldHead] = nil
		w.heldHead++
		w.heldFree = append(w.heldFree, h)
	}
	w.heldOrder, w.heldHead = w.heldOrder[:0], 0
	return nil
}

// releaseDue releases the sessions whose window has ended by now.
func (w *Worker) releaseDue(now time.Time) {
	for h := w.firstHeld(); h != nil && !now.Before(h.since.Add(w.opts.ExchangeWindow)); h = w.firstHeld() {
		w.release(h)
	}
	if w.heldHead > 1024 && w.heldHead > len(w.heldOrder)/2 {
		n := copy(w.heldOrder, w.heldOrder[w.heldHead:])
		clear(w.heldOrder[n:])
		w.heldOrder, w.heldHead = w.heldOrder[:n], 0
	}
}

// takeDue moves retries that are due into the batch.
func (w *Worker) takeDue(now time.Time) {
	for w.retry.Len() > 0 && len(w.items) < w.opts.BatchSize && !w.retry[0].due.After(now) {
		r := heap.Pop(&w.retry).(*retryEntry)
		w.items = append(w.items, item{ev: r.ev, attempts: r.attempts})
	}
	w.retryDepth.Store(int64(w.retry.Len()))
}

// drain writes everything left at Close: the queue (no Record can add to
// it any more), then each retry once more regardless of its due time.
func (w *Worker) drain() {
	for h := w.firstHeld(); h != nil; h = w.firstHeld() {
		w.release(h)
	}
	w.opts.ExchangeWindow = -1 // hold nothing more
	w.draining = true
	for {
		w.items = w.items[:0]
		w.fill()
		if len(w.items) == 0 {
			break
		}
		w.flush(false)
	}
	w.settleAll() // failed syncs join the retry heap
	for w.retry.Len() > 0 {
		w.items = w.items[:0]
		for w.retry.Len() > 0 && len(w.items) < w.opts.BatchSize {
			r := heap.Pop(&w.retry).(*retryEntry)
			w.items = append(w.items, item{ev: r.ev, attempts: r.attempts})
		}
		w.flush(true)
	}
	w.settleAll()
	w.flushMeta(true)
	if w.syncing != nil {
		close(w.syncing)
		<-w.syncerDone
	}
}

// flushMeta writes the session metadata records that lag (all of them
// when all is set) in a batch of their own: sessions that went quiet get
// theirs without waiting for another event.
func (w *Worker) flushMeta(all bool) {
	if _, err := w.store.commitEvents(nil, w.commit, w.wo, &w.scratch, all); err != nil {
		w.m.failures.Inc()
		w.metaRetry = time.Now().Add(w.opts.RetryBase)
		w.log.Warn("session metadata commit failed; will retry", "err", err, "at_shutdown", all)
	}
}

// prepare redacts and truncates an event on its first attempt.
func (w *Worker) prepare(e *event.Event) {
	for i := range e.Headers {
		if w.redact.Has(e.Headers[i].Name) {
			e.Headers[i].Value = Redacted
		}
	}
	if n := w.opts.CaptureBytes; n > 0 {
		if len(e.Body) > n {
			if e.BodyBytes == 0 {
				e.BodyBytes = int64(len(e.Body))
			}
			e.Body = e.Body[:n]
		}
	}
}

// flush commits the batch in w.items. final (at Close) makes a failure
// exhaust the events instead of scheduling another attempt.
func (w *Worker) flush(final bool) {
	if len(w.items) == 0 {
		return
	}
	// Coalesce: a repeated SSE id on one stream of one session within the
	// batch is the same event sent again (an upstream resuming); keep the
	// first. Activity touches coalesce inside commitEvents (one metadata
	// write per session).
	clear(w.dedup)
	kept := w.items[:0]
	dups := 0
	for _, it := range w.items {
		e := it.ev
		if it.attempts == 0 {
			w.prepare(e)
		}
		if e.Type == event.SSE && e.EventID != "" {
			k := sseIdentity{e.Session, e.Stream, e.EventID}
			if _, seen := w.dedup[k]; seen {
				if e.Seq != 0 {
					w.store.release([]*event.Event{e})
				}
				e.Release()
				dups++
				continue
			}
			w.dedup[k] = struct{}{}
		}
		kept = append(kept, it)
	}
	w.items = kept
	w.evs = w.evs[:0]
	for _, it := range w.items {
		w.evs = append(w.evs, it.ev)
	}
	w.m.batchSize.Observe(float64(len(w.evs)))
	p := w.newPending()
	p.items = append(p.items, w.items...)
	p.dups, p.final, p.start = dups, final, time.Now()
	c := w.commit
	if w.async != nil {
		c = noSyncWait{w.async}
	}
	p.keys, p.err = w.store.commitEvents(w.evs, c, w.wo, &w.scratch, false)
	if w.async == nil || p.err != nil || p.keys == 0 {
		w.finish(p)
		return
	}
	// Applied: the sync is the syncer's to wait for. The batch stays
	// with p until then.
	p.b, w.scratch.batch = w.scratch.batch, nil
	for w.unsynced >= w.opts.SyncDepth {
		w.settle(<-w.synced)
	}
	w.unsynced++
	w.unsyncedEvents += len(p.items)
	w.syncing <- p
}

// syncer waits for the log sync of each applied batch, in order, and
// hands it back to the worker goroutine.
func (w *Worker) syncer() {
	defer close(w.syncerDone)
	for p := range w.syncing {
		p.err = w.async.SyncWait(p.b)
		w.synced <- p
	}
}

// settle finishes a batch back from the syncer.
func (w *Worker) settle(p *pendingBatch) {
	w.unsynced--
	w.unsyncedEvents -= len(p.items)
	w.finish(p)
}

// settleSynced finishes the batches whose sync is over, without waiting:
// a busy worker would otherwise report them only once SyncDepth batches
// wait.
func (w *Worker) settleSynced() {
	for w.unsynced > 0 {
		select {
		case p := <-w.synced:
			w.settle(p)
		default:
			return
		}
	}
}

// settleAll waits for every unsynced batch.
func (w *Worker) settleAll() {
	for w.unsynced > 0 {
		w.settle(<-w.synced)
	}
}

func (w *Worker) newPending() *pendingBatch {
	if n := len(w.spare); n > 0 {
		p := w.spare[n-1]
		w.spare = w.spare[:n-1]
		return p
	}
	return &pendingBatch{}
}

// finish accounts for a batch whose commit (and sync) is over: its events
// are written, or go to the retry heap (exhausted when p.final or out of
// attempts).
func (w *Worker) finish(p *pendingBatch) {
	w.m.commitLatency.Observe(time.Since(p.start).Seconds())
	applied := p.b != nil // in the memtable; p.err is then its sync's
	if p.b != nil {
		p.b.Close()
		p.b = nil
	}
	if p.err == nil {
		// Without coalescing each event would write its own key, its
		// session's metadata, and its SSE id index entry.
		logical := 2*len(p.items) + 2*p.dups
		for _, it := range p.items {
			p.evs = append(p.evs, it.ev)
			if it.ev.Type == event.SSE && it.ev.EventID != "" {
				logical++
			}
		}
		w.m.written.Add(float64(len(p.evs)))
		w.m.coalesce(p.dups, logical, p.keys)
		if w.opts.OnCommit != nil {
			w.opts.OnCommit(p.evs)
		}
		for _, e := range p.evs {
			e.Release()
		}
	} else {
		if applied {
			for _, it := range p.items {
				p.evs = append(p.evs, it.ev)
			}
			w.store.unapply(p.evs)
		}
		w.failed(p.items, p.final, p.err)
	}
	clear(p.items)
	clear(p.evs)
	p.items, p.evs, p.err = p.items[:0], p.evs[:0], nil
	w.spare = append(w.spare, p)
}

// failed sends the events of a batch that did not commit to the retry
// heap, or counts and logs them exhausted.
func (w *Worker) failed(items []item, final bool, err error) {
	w.m.failures.Inc()
	now := time.Now()
	var exhausted []*event.Event
	for _, it := range items {
		it.attempts++
		if final || it.attempts >= w.opts.MaxAttempts {
			exhausted = append(exhausted, it.ev)
			continue
		}
		w.m.retries.Inc()
		heap.Push(&w.retry, &retryEntry{ev: it.ev, attempts: it.attempts, due: now.Add(w.backoff(it.attempts))})
	}
	w.retryDepth.Store(int64(w.retry.Len()))
	if len(exhausted) == 0 {
		w.log.Warn("session events commit failed; will retry", "events", len(items), "err", err)
		return
	}
	w.m.exhausted.Add(float64(len(exhausted)))
	w.store.release(exhausted)
	sample := make([]string, 0, 3)
	for _, e := range exhausted[:min(3, len(exhausted))] {
		sample = append(sample, fmt.Sprintf("%s/%d(%s)", e.Session, e.Seq, e.Type))
	}
	w.log.Error("session events lost: commit attempts exhausted",
		"events", len(exhausted), "first", sample, "max_attempts", w.opts.MaxAttempts, "at_shutdown", final, "err", err)
	for _, e := range exhausted {
		e.Release()
	}
}

// backoff is the wait before attempt n+1: base doubling per attempt, capped.
func (w *Worker) backoff(attempts int) time.Duration {
	d := w.opts.RetryBase
	for i := 1; i < attempts && d < w.opts.RetryCap; i++ {
		d *= 2
	}
	return min(d, w.opts.RetryCap)
}

type retryEntry struct {
	ev       *event.Event
	attempts int
	due      time.Time
}

// retryHeap orders events waiting for another attempt by due time.
type retryHeap []*retryEntry

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h retryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)        { *h = append(*h, x.(*retryEntry)) }
func (h *retryHeap) Pop() any {
	old := *h
	n := len(old)
	x := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return x
}
