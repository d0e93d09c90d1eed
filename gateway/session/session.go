// Package session is the gateway's session table: which sessions are alive,
// since when, how busy they are, and which SSE event ids each of their
// streams has seen.
//
// A session exists from the first request that carries its key (the proxy
// calls [Table.Touch] on every such request) until it is ended: by a DELETE
// from the client ([Table.End] with reason "deleted"), by idleness (the one
// cleanup loop, [Table.Run], reason "idle") or by shutdown ([Table.Close],
// reason "shutdown"). Each start and end goes to the event sink, so a
// recording shows a session's whole life.
//
// Everything is bounded. The table holds at most sessions.max_sessions
// entries; a new session past that is refused with [ErrFull] (existing
// sessions keep working). Each session remembers the last
// sse.tracked_event_ids event ids of at most sse.tracked_streams streams,
// each id for at most sse.tracked_event_ttl. A client-supplied id longer
// than [MaxIDLength] or holding bytes outside visible ASCII is refused with
// [ErrInvalidID], so a client cannot make the table hold large keys.
//
// Touch is on the request path, so the table is split into shards, each a
// map under its own RWMutex: a request for a known session takes only a read
// lock on one shard and updates atomics, and never allocates.
// BenchmarkTouch compares this against a single shard.
package session

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/event"
)

// Reasons a session ends, recorded in the SessionEnd event's Message.
const (
	ReasonIdle     = "idle"
	ReasonDeleted  = "deleted"
	ReasonShutdown = "shutdown"
)

// MaxIDLength is the longest session id the table accepts (long enough for
// a JWT used as a session id).
const MaxIDLength = 1024

var (
	// ErrFull means the table holds sessions.max_sessions sessions and the
	// request would start another one.
	ErrFull = errors.New("session table full")
	// ErrInvalidID means the id is empty, longer than MaxIDLength or holds
	// a byte outside visible ASCII (0x21..0x7E).
	ErrInvalidID = errors.New("invalid session id")
	// ErrClosed means the table was closed (the gateway is shutting down).
	ErrClosed = errors.New("session table closed")
)

// defaultShards is the shard count: a power of two, a few times the core
// count of a typical server, small enough that a sweep stays cheap.
const defaultShards = 64

// defaultCleanupInterval applies when sessions.cleanup_interval is unset.
const defaultCleanupInterval = 30 * time.Second

// Table is the bounded session table. Its methods are safe for concurrent
// use.
type Table struct {
	shards []shard
	mask   uint64
	seed   maphash.Seed

	max     atomic.Int64
	idle    atomic.Int64 // ns
	every   atomic.Int64 // ns
	reconf  chan struct{}
	n       atomic.Int64
	closed  atomic.Bool
	track   trackLimits
	sink    event.Sink
	log     *slog.Logger
	metrics *metrics
}

type shard struct {
	mu sync.RWMutex
	m  map[string]*Session
	_  [40]byte // keep neighbouring shards' locks off one cache line
}

// NewTable returns an empty table. sink receives SessionStart and
// SessionEnd events (nil means event.Discard); the table's metrics are
// registered on reg when it is not nil.
func NewTable(cfg config.Sessions, sseCfg config.SSE, sink event.Sink, log *slog.Logger, reg prometheus.Registerer) *Table {
	return newTable(cfg, sseCfg, sink, log, reg, defaultShards)
}

func newTable(cfg config.Sessions, sseCfg config.SSE, sink event.Sink, log *slog.Logger, reg prometheus.Registerer, shards int) *Table {
	if sink == nil {
		sink = event.Discard
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Table{
		shards: make([]shard, shards),
		mask:   uint64(shards - 1),
		seed:   maphash.MakeSeed(),
		reconf: make(chan struct{}, 1),
		sink:   sink,
		log:    log,
	}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*Session)
	}
	t.metrics = newMetrics(reg)
	t.track.evicted = t.metrics.streamsEvicted
	t.Reconfigure(cfg, sseCfg)
	return t
}

// Reconfigure applies new limits (a configuration reload) to the live
// table: max_sessions, idle_timeout and cleanup_interval take effect at
// once, tracking limits on each session's next tracked id. Lowering
// max_sessions below Len ends no session; it only refuses new ones until
// enough have ended.
func (t *Table) Reconfigure(cfg config.Sessions, sseCfg config.SSE) {
	every := cfg.CleanupInterval.D()
	if every <= 0 {
		every = defaultCleanupInterval
	}
	t.max.Store(int64(cfg.MaxSessions))
	t.idle.Store(int64(cfg.IdleTimeout.D()))
	t.track.ids.Store(int64(sseCfg.TrackedEventIDs))
	t.track.streams.Store(int64(sseCfg.TrackedStreams))
	t.track.ttl.Store(int64(sseCfg.TrackedEventTTL.D()))
	if t.every.Swap(int64(every)) != int64(every) {
		select {
		case t.reconf <- struct{}{}:
		default:
		}
	}
}

func (t *Table) shardOf(id string) *shard {
	return &t.shards[maphash.String(t.seed, id)&t.mask]
}

// ValidID reports whether id is acceptable as a session id: 1 to
// MaxIDLength bytes of visible ASCII.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > MaxIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// Touch records a request in session id on route, starting the session
// (and emitting SessionStart) when it is not in the table. started is true
// when this call started it. It fails with ErrInvalidID, ErrFull or
// ErrClosed; the proxy answers 400, 503 and 503.
func (t *Table) Touch(id, route string) (s *Session, started bool, err error) {
	if !ValidID(id) {
		return nil, false, ErrInvalidID
	}
	now := time.Now().UnixNano()
	sh := t.shardOf(id)
	sh.mu.RLock()
	s = sh.m[id]
	if s != nil {
		// Updated under the read lock so that the sweep, which deletes
		// under the write lock, never removes a session that was just
		// touched.
		s.lastSeen.Store(now)
		s.requests.Add(1)
		sh.mu.RUnlock()
		return s, false, nil
	}
	sh.mu.RUnlock()

	sh.mu.Lock()
	if s = sh.m[id]; s != nil {
		s.lastSeen.Store(now)
		s.requests.Add(1)
		sh.mu.Unlock()
		return s, false, nil
	}
	// Checked under the shard lock: Close marks the table closed before
	// it empties each shard, so no session can slip in behind it.
	if t.closed.Load() {
		sh.mu.Unlock()
		return nil, false, ErrClosed
	}
	if t.n.Add(1) > t.max.Load() {
		t.n.Add(-1)
		sh.mu.Unlock()
		t.metrics.rejectedFull.Inc()
		return nil, false, ErrFull
	}
	s = &Session{ID: id, Route: route, Started: time.Unix(0, now), track: &t.track}
	s.lastSeen.Store(now)
	s.requests.Store(1)
	// Held until SessionStart is recorded, so that an End racing this
	// start records its SessionEnd after it.
	s.mu.Lock()
	sh.m[id] = s
	sh.mu.Unlock()

	t.metrics.active.Inc()
	t.metrics.started.Inc()
	t.sink.Record(&event.Event{Session: id, Time: s.Started, Type: event.SessionStart, Route: route})
	s.mu.Unlock()
	return s, true, nil
}

// TouchBytes is Touch for an id still in a request buffer: touching a known
// session allocates nothing (no string is made from id); only starting a
// session copies it.
func (t *Table) TouchBytes(id []byte, route string) (s *Session, started bool, err error) {
	if !validIDBytes(id) {
		return nil, false, ErrInvalidID
	}
	sh := &t.shards[maphash.Bytes(t.seed, id)&t.mask]
	sh.mu.RLock()
	s = sh.m[string(id)]
	if s != nil {
		s.lastSeen.Store(time.Now().UnixNano())
		s.requests.Add(1)
		sh.mu.RUnlock()
		return s, false, nil
	}
	sh.mu.RUnlock()
	return t.Touch(string(id), route)
}

func validIDBytes(id []byte) bool {
	if len(id) == 0 || len(id) > MaxIDLength {
		return false
	}
	for _, c := range id {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// Get returns the session with that id, without touching it.
func (t *Table) Get(id string) (*Session, bool) {
	sh := t.shardOf(id)
	sh.mu.RLock()
	s, ok := sh.m[id]
	sh.mu.RUnlock()
	return s, ok
}

// End removes session id and emits SessionEnd with reason as its message.
// It returns false when the session is not in the table.
func (t *Table) End(id, reason string) bool {
	sh := t.shardOf(id)
	sh.mu.Lock()
	s, ok := sh.m[id]
	if ok {
		delete(sh.m, id)
	}
	sh.mu.Unlock()
	if ok {
		t.ended(s, reason, time.Now())
	}
	return ok
}

func (t *Table) ended(s *Session, reason string, now time.Time) {
	t.n.Add(-1)
	t.metrics.active.Dec()
	t.metrics.endedBy(reason).Inc()
	s.mu.Lock() // after the SessionStart (see Touch)
	t.sink.Record(&event.Event{Session: s.ID, Time: now, Type: event.SessionEnd, Route: s.Route, Message: reason})
	s.mu.Unlock()
}

// Run is the table's one cleanup loop: every sessions.cleanup_interval it
// ends sessions idle for longer than sessions.idle_timeout (reason "idle")
// and forgets tracked streams whose ids all outlived their TTL. It returns
// when ctx is done. An idle_timeout of 0 disables expiry.
func (t *Table) Run(ctx context.Context) {
	tick := time.NewTicker(time.Duration(t.every.Load()))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.reconf:
			tick.Reset(time.Duration(t.every.Load()))
		case now := <-tick.C:
			t.sweep(now)
		}
	}
}

// sweep expires idle sessions. It finds candidates under each shard's read
// lock (so Touch is not held up while it scans), then deletes them under
// the write lock after checking again: a Touch in between keeps its
// session.
func (t *Table) sweep(now time.Time) {
	nowNs := now.UnixNano()
	idle := t.idle.Load()
	var expired, withStreams []*Session
	var ended int
	for i := range t.shards {
		sh := &t.shards[i]
		expired, withStreams = expired[:0], withStreams[:0]
		sh.mu.RLock()
		for _, s := range sh.m {
			if idle > 0 && nowNs-s.lastSeen.Load() > idle {
				expired = append(expired, s)
			} else if s.nStreams.Load() > 0 {
				withStreams = append(withStreams, s)
			}
		}
		sh.mu.RUnlock()
		if len(expired) > 0 {
			n := 0
			sh.mu.Lock()
			for _, s := range expired {
				if nowNs-s.lastSeen.Load() > idle && sh.m[s.ID] == s {
					delete(sh.m, s.ID)
					expired[n] = s
					n++
				}
			}
			sh.mu.Unlock()
			for _, s := range expired[:n] {
				t.ended(s, ReasonIdle, now)
			}
			ended += n
			clear(expired)
		}
		for _, s := range withStreams {
			s.pruneStreams(nowNs)
		}
		clear(withStreams)
	}
	if ended > 0 {
		t.log.Debug("sessions expired", "count", ended, "active", t.n.Load())
	}
}

// Close ends every session with reason "shutdown"; Touch fails with
// ErrClosed afterwards. Call it after the proxy has drained.
func (t *Table) Close() {
	t.closed.Store(true)
	now := time.Now()
	var all []*Session
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for id, s := range sh.m {
			all = append(all, s)
			delete(sh.m, id)
		}
		sh.mu.Unlock()
		for _, s := range all {
			t.ended(s, ReasonShutdown, now)
		}
		all = all[:0]
	}
}

// Len returns the number of sessions in the table.
func (t *Table) Len() int { return int(t.n.Load()) }

// Info is a copy of one session's state, for the admin API.
type Info struct {
	ID       string    `json:"id"`
	Route    string    `json:"route"`
	Started  time.Time `json:"started"`
	LastSeen time.Time `json:"last_seen"`
	Requests uint64    `json:"requests"`
	// LastEventIDs maps each tracked stream to the last event id seen on
	// it (ids past their TTL left out).
	LastEventIDs map[string]string `json:"last_event_ids,omitempty"`
}

// Snapshot returns up to limit sessions, most recently started first
// (limit <= 0 means all).
func (t *Table) Snapshot(limit int) []Info {
	var all []*Session
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		for _, s := range sh.m {
			all = append(all, s)
		}
		sh.mu.RUnlock()
	}
	slices.SortFunc(all, func(a, b *Session) int {
		if c := b.Started.Compare(a.Started); c != 0 {
			return c
		}
		return compareStrings(b.ID, a.ID)
	})
	if limit > 0 && len(all) > limit {
		all = all[:limit]
	}
	now := time.Now().UnixNano()
	out := make([]Info, len(all))
	for i, s := range all {
		out[i] = Info{
			ID:           s.ID,
			Route:        s.Route,
			Started:      s.Started,
			LastSeen:     s.LastSeen(),
			Requests:     s.Requests(),
			LastEventIDs: s.lastEventIDs(now),
		}
	}
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
