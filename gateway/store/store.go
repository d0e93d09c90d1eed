package store

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/wasmgate/wasmgate/gateway/event"
)

// FormatMajorVersion is the Pebble on-disk format every store is created
// with. A format upgrade cannot be undone, so it is pinned rather than left
// to follow the library.
const FormatMajorVersion = pebble.FormatTableFormatV6

// Options configure Open. Zero values take the documented defaults.
type Options struct {
	// ReadOnly opens an existing store for queries only (the CLI). Pebble
	// still takes the directory lock, so this fails while a gateway has
	// the store open.
	ReadOnly bool
	// MemTableSize is Pebble's memtable size (default 32 MiB). The 4 MiB
	// Pebble default stalls writes at a few tens of thousands of events/s;
	// a larger one also lengthens WAL replay after a crash.
	MemTableSize uint64
	// CacheSize is Pebble's block cache (default 16 MiB).
	CacheSize int64
	// MinSyncInterval is the least time between write-ahead log syncs
	// (default 0: sync as soon as asked). A sync asked for sooner waits,
	// and every commit that arrives meanwhile shares it; see Worker.
	MinSyncInterval time.Duration
	// SessionCacheSize bounds the per-session sequence state kept in
	// memory (default 65,536 sessions); an evicted session's state is read
	// back from its metadata record on its next event.
	SessionCacheSize int
	Logger           *slog.Logger
	// Registerer receives the store gauges (nil: none).
	Registerer prometheus.Registerer
}

func (o *Options) setDefaults() {
	if o.MemTableSize == 0 {
		o.MemTableSize = 32 << 20
	}
	if o.CacheSize == 0 {
		o.CacheSize = 16 << 20
	}
	if o.SessionCacheSize == 0 {
		o.SessionCacheSize = 65536
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Store is an open session-event store. Its query methods are safe for
// concurrent use with each other and with a Worker writing.
type Store struct {
	db       *pebble.DB
	log      *slog.Logger
	readOnly bool

	// mu serializes writers: a Worker commit, DeleteSession and retention.
	// It guards sessions, the in-memory sequence state.
	mu        sync.Mutex
	sessions  map[string]*sessionState
	cacheSize int
	// dirtyQ lists sessions whose metadata record is behind their state,
	// in the order they fell behind; entries from dirtyHead on are live
	// unless the session was written or forgotten since (commitEvents).
	dirtyQ    []dirtyEntry
	dirtyHead int

	expired *prometheus.CounterVec
	live    prometheus.Gauge
}

// sessionState is what the writer knows about a session.
type sessionState struct {
	// id is the session's id, its own copy: an event's strings may be
	// reused once the event is released (package event), and this state
	// outlives the events.
	id   string
	meta sessionMeta
	// stored: the metadata record (and start index entry) exist on disk.
	stored bool
	// pending counts events holding a seq of this session that are not
	// committed yet (in a batch being written or in the retry heap); a
	// session with pending events is never evicted, so its numbers are not
	// handed out twice.
	pending int
	// dirty: meta holds committed events its metadata record does not
	// count yet, since dirtySince (unix nanos). See metaInterval.
	dirty      bool
	dirtySince int64
}

// metaInterval is how long a session's metadata record may lag behind its
// committed events. An active session's record is rewritten at most this
// often instead of with every batch: the record is a third of the keys a
// request writes, and Pebble's memtable insert is most of a commit's CPU.
// A session's first batch and its end are written at once. Readers and
// the writer add the events stored past the record's last seq
// (recoverTail), so neither a running store nor one after a crash shows
// the lag.
var metaInterval = time.Second // a variable for tests

// dirtyEntry is a session whose metadata record fell behind at since.
type dirtyEntry struct {
	id    string
	since int64
}

// pebbleLogger sends Pebble's chatter to slog: Info at debug level.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}
func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
}
func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
	panic(fmt.Sprintf("pebble: "+format, args...))
}

// Open opens (creating unless read-only) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	opts.setDefaults()
	cache := pebble.NewCache(opts.CacheSize)
	defer cache.Unref() // the DB holds its own reference
	po := &pebble.Options{
		FormatMajorVersion:          FormatMajorVersion,
		ReadOnly:                    opts.ReadOnly,
		ErrorIfNotExists:            opts.ReadOnly,
		Cache:                       cache,
		MemTableSize:                opts.MemTableSize,
		MemTableStopWritesThreshold: 4,
		L0CompactionThreshold:       4,
		L0StopWritesThreshold:       24,
		Logger:                      pebbleLogger{opts.Logger},
	}
	if d := opts.MinSyncInterval; d > 0 {
		po.WALMinSyncInterval = func() time.Duration { return d }
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s := &Store{
		db:        db,
		log:       opts.Logger,
		readOnly:  opts.ReadOnly,
		sessions:  make(map[string]*sessionState),
		cacheSize: opts.SessionCacheSize,
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_store_sessions_expired_total",
			Help: "Sessions deleted by retention, by reason (age, size).",
		}, []string{"reason"}),
		live: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wasmgate_store_live_bytes",
			Help: "Encoded size of the recorded events still live, as of the last retention pass.",
		}),
	}
	if err := s.checkVersion(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	if opts.Registerer != nil {
		disk := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wasmgate_store_disk_bytes",
			Help: "Disk space used by the store (Pebble's estimate).",
		}, func() float64 { return float64(s.db.Metrics().DiskSpaceUsage()) })
		cached := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wasmgate_store_session_cache_entries",
			Help: "Sessions whose sequence state the writer keeps in memory (bounded by the session cache size, 65,536 by default).",
		}, func() float64 {
			s.mu.Lock()
			defer s.mu.Unlock()
			return float64(len(s.sessions))
		})
		syncs := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "wasmgate_store_wal_syncs_total",
			Help: "Write-ahead log syncs; with commits pipelined, several batches share one (compare wasmgate_store_batch_events_count).",
		}, func() float64 { return float64(s.walSyncs()) })
		for _, c := range []prometheus.Collector{s.expired, s.live, disk, cached, syncs} {
			if err := opts.Registerer.Register(c); err != nil {
				db.Close()
				return nil, fmt.Errorf("register store metrics: %w", err)
			}
		}
	}
	return s, nil
}

// walSyncs returns the number of write-ahead log syncs since Open.
func (s *Store) walSyncs() uint64 {
	h := s.db.Metrics().LogWriter.FsyncLatency
	if h == nil {
		return 0
	}
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		return 0
	}
	return m.GetHistogram().GetSampleCount()
}

func (s *Store) checkVersion() error {
	v, closer, err := s.db.Get([]byte(keyVersion))
	if errors.Is(err, pebble.ErrNotFound) {
		if s.readOnly {
			return nil // an empty store: nothing to read
		}
		return s.db.Set([]byte(keyVersion), []byte(layoutVersion), pebble.Sync)
	}
	if err != nil {
		return err
	}
	defer closer.Close()
	switch string(v) {
	case layoutVersion:
		return nil
	case layoutVersion1:
		// Version 2 only adds run values: a v1 store reads as it is, and
		// is marked 2 before this build writes a run into it.
		if s.readOnly {
			return nil
		}
		return s.db.Set([]byte(keyVersion), []byte(layoutVersion), pebble.Sync)
	}
	return fmt.Errorf("store layout %q, this build reads %q", v, layoutVersion)
}

// Close closes the store. Close the Worker writing to it first.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// BatchCommitter commits one Pebble batch; *pebble.DB is one. A Worker
// commits through it, so tests can make commits fail for real.
type BatchCommitter interface {
	Apply(b *pebble.Batch, opts *pebble.WriteOptions) error
}

// state returns the writer's state of session, loading it from the
// metadata record when not cached. s.mu must be held.
func (s *Store) state(session string) (*sessionState, error) {
	if st, ok := s.sessions[session]; ok {
		return st, nil
	}
	st := &sessionState{id: strings.Clone(session)}
	m, found, err := s.getMeta(session)
	if err != nil {
		return nil, err
	}
	if found {
		st.meta, st.stored = m, true
		n, err := s.recoverTail(session, &st.meta)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			now := time.Now().UnixNano()
			st.dirty, st.dirtySince = true, now
			s.dirtyQ = append(s.dirtyQ, dirtyEntry{st.id, now})
		}
	}
	s.sessions[st.id] = st
	return st, nil
}

// recoverTail adds to m the events of session stored past m.LastSeq: those
// committed after the metadata record was last written (a crash lost the
// newer state). It returns how many it found.
func (s *Store) recoverTail(session string, m *sessionMeta) (int, error) {
	n := 0
	err := s.eachEncoded(context.Background(), session, m.LastSeq, func(seq uint64, enc []byte) (bool, error) {
		n++
		m.LastSeq = seq
		m.Events++
		m.Bytes += eventBytes(session, len(enc))
		if typ, t, ok := eventHead(enc); ok {
			switch typ {
			case event.SessionEnd:
				m.Ended = true
			case event.SessionStart:
				m.Ended = false
			}
			if t > m.LastActivity {
				m.LastActivity = t
			}
		}
		return true, nil
	})
	return n, err
}

// currentMeta is the metadata of session with the events its record does
// not count yet (metaInterval) added.
func (s *Store) currentMeta(session string) (sessionMeta, bool, error) {
	m, found, err := s.getMeta(session)
	if err != nil || !found {
		return m, found, err
	}
	if _, err := s.recoverTail(session, &m); err != nil {
		return m, false, err
	}
	return m, true, nil
}

func (s *Store) getMeta(session string) (sessionMeta, bool, error) {
	v, closer, err := s.db.Get(metaKey(nil, session))
	if errors.Is(err, pebble.ErrNotFound) {
		return sessionMeta{}, false, nil
	}
	if err != nil {
		return sessionMeta{}, false, fmt.Errorf("read session %q: %w", session, err)
	}
	defer closer.Close()
	m, err := decodeMeta(v)
	if err != nil {
		return m, false, fmt.Errorf("read session %q: %w", session, err)
	}
	return m, true, nil
}

// writeScratch is reused across commits by the single writing goroutine.
type writeScratch struct {
	batch *pebble.Batch
	key   []byte
	val   []byte
	// touched indexes touches by session; both are reset per batch and
	// keep their storage.
	touched map[string]int
	touches []touch
	// buf and ents hold the batch's other records until setSorted.
	buf  []byte
	ents []kv
	// enc holds the batch's encoded events, encs[i] locating evs[i]'s;
	// order and run group them into runs (setRuns).
	enc   []byte
	encs  []span
	order []int
	run   [][]byte
}

// span locates an encoded event in writeScratch.enc.
type span struct{ start, end int }

// setRuns adds the batch's events to b, one record per run of
// consecutive sequence numbers of one session (at most maxRunEvents and
// maxRunBytes; a lone event is a plain v1 value), in key order, and
// returns how many records. Event keys sort before every other key the
// store writes, so the other records (setSorted) go after them.
func (sc *writeScratch) setRuns(b *pebble.Batch, evs []*event.Event) (int, error) {
	sc.order = sc.order[:0]
	for i := range evs {
		sc.order = append(sc.order, i)
	}
	// Key order: the id's length first (eventKey's len16), then its bytes.
	slices.SortFunc(sc.order, func(a, b int) int {
		ea, eb := evs[a], evs[b]
		if c := cmp.Compare(len(ea.Session), len(eb.Session)); c != 0 {
			return c
		}
		if c := strings.Compare(ea.Session, eb.Session); c != 0 {
			return c
		}
		return cmp.Compare(ea.Seq, eb.Seq)
	})
	keys := 0
	for i := 0; i < len(sc.order); {
		first := evs[sc.order[i]]
		sp := sc.encs[sc.order[i]]
		size := sp.end - sp.start
		j := i + 1
		for ; j < len(sc.order) && j-i < maxRunEvents; j++ {
			e, n := evs[sc.order[j]], sc.encs[sc.order[j]]
			if e.Session != first.Session || e.Seq != first.Seq+uint64(j-i) || size+n.end-n.start > maxRunBytes {
				break
			}
			size += n.end - n.start
		}
		sc.key = eventKey(sc.key[:0], first.Session, first.Seq)
		val := sc.enc[sp.start:sp.end]
		if j-i > 1 {
			sc.run = sc.run[:0]
			for _, k := range sc.order[i:j] {
				sc.run = append(sc.run, sc.enc[sc.encs[k].start:sc.encs[k].end])
			}
			sc.val = appendRun(sc.val[:0], sc.run)
			clear(sc.run)
			val = sc.val
		}
		if err := b.Set(sc.key, val, nil); err != nil {
			return keys, err
		}
		keys++
		i = j
	}
	return keys, nil
}

// kv is a key and value in writeScratch.buf: key buf[k:v], value
// buf[v:end].
type kv struct{ k, v, end int }

func (sc *writeScratch) put(key, val []byte) {
	k := len(sc.buf)
	sc.buf = append(sc.buf, key...)
	v := len(sc.buf)
	sc.buf = append(sc.buf, val...)
	sc.ents = append(sc.ents, kv{k, v, len(sc.buf)})
}

// setSorted adds the records to b in key order. Pebble inserts a batch
// into its memtable skiplist one key at a time, reusing the previous
// key's search path while it still brackets the next; sessions interleave,
// so in arrival order every insert searched from the top of a list
// holding hundreds of thousands of keys. (The event records, most of a
// batch, are added in order by setRuns without this copy and sort.)
func (sc *writeScratch) setSorted(b *pebble.Batch) error {
	buf := sc.buf
	slices.SortStableFunc(sc.ents, func(a, c kv) int {
		return bytes.Compare(buf[a.k:a.v], buf[c.k:c.v])
	})
	for _, r := range sc.ents {
		if err := b.Set(buf[r.k:r.v], buf[r.v:r.end], nil); err != nil {
			return err
		}
	}
	return nil
}

// touch is one session's change within a batch: the activity touches of
// all its events coalesce into one metadata write.
type touch struct {
	st    *sessionState
	next  sessionMeta
	n     int  // events of this session in the batch
	write bool // write the metadata record in this batch
}

// advanceDirty drops the dirty queue entries before i (handled by a
// committed batch, or stale), compacting the queue once half is dropped.
func (s *Store) advanceDirty(i int) {
	s.dirtyHead = i
	if s.dirtyHead == len(s.dirtyQ) {
		s.dirtyQ, s.dirtyHead = s.dirtyQ[:0], 0
	} else if s.dirtyHead > len(s.dirtyQ)/2 {
		n := copy(s.dirtyQ, s.dirtyQ[s.dirtyHead:])
		clear(s.dirtyQ[n:])
		s.dirtyQ, s.dirtyHead = s.dirtyQ[:n], 0
	}
}

// hasDirty reports whether some metadata record may lag, and since when
// the oldest one may (its entry can be stale: the session was written
// since; commitEvents then finds nothing to write).
func (s *Store) hasDirty() (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dirtyHead < len(s.dirtyQ) {
		return s.dirtyQ[s.dirtyHead].since, true
	}
	return 0, false
}

// commitEvents assigns sequence numbers to the events that have none,
// writes all events, their SSE id index entries and one metadata record per
// session into one batch, and commits it through c. It returns the number
// of Pebble keys written. On error the events keep their numbers (retries
// rewrite the same keys, so a batch that committed but reported failure is
// harmless) and nothing in memory moves but the reserved numbers.
//
// A session's metadata record is written with its first batch, with a
// batch holding its start or end or a retried event of it, and once it has
// lagged metaInterval
// (all lagging records when flushAll, at Close, or when the session cache
// is over its bound); with no events, commitEvents writes only those.
func (s *Store) commitEvents(evs []*event.Event, c BatchCommitter, wo *pebble.WriteOptions, sc *writeScratch, flushAll bool) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now().UnixNano()
	flushAll = flushAll || len(s.sessions) > s.cacheSize
	if sc.batch == nil {
		sc.batch = s.db.NewBatch()
	}
	if sc.touched == nil {
		sc.touched = make(map[string]int)
	}
	b := sc.batch
	b.Reset()
	sc.buf, sc.ents = sc.buf[:0], sc.ents[:0]
	sc.enc, sc.encs = sc.enc[:0], sc.encs[:0]
	clear(sc.touched)
	clear(sc.touches) // drop the session state pointers
	sc.touches = sc.touches[:0]
	keys := 0
	for _, e := range evs {
		i, ok := sc.touched[e.Session]
		if !ok {
			st, err := s.state(e.Session)
			if err != nil {
				return 0, err
			}
			i = len(sc.touches)
			sc.touches = append(sc.touches, touch{st: st, next: st.meta, write: !st.stored || flushAll ||
				(st.dirty && now-st.dirtySince >= int64(metaInterval))})
			sc.touched[e.Session] = i
		}
		t := &sc.touches[i]
		if e.Seq == 0 {
			t.st.meta.LastSeq++
			e.Seq = t.st.meta.LastSeq
			t.st.pending++
		} else {
			// A retry: its number may be below the record's last one,
			// where readers and recovery do not look (recoverTail). Or
			// above it: the session was deleted (and forgotten) while
			// the number's batch waited for a sync that then failed;
			// numbering goes on above it.
			t.write = true
			t.st.meta.LastSeq = max(t.st.meta.LastSeq, e.Seq)
		}
		t.n++
		start := len(sc.enc)
		sc.enc = appendEvent(sc.enc, e)
		sc.encs = append(sc.encs, span{start, len(sc.enc)})
		m := &t.next
		m.Events++
		m.Bytes += eventBytes(e.Session, len(sc.enc)-start)
		tn := e.Time.UnixNano()
		if m.Start == 0 || (!t.st.stored && tn < m.Start) {
			m.Start = tn
		}
		if tn > m.LastActivity {
			m.LastActivity = tn
		}
		if m.Route == "" {
			m.Route = strings.Clone(e.Route) // kept in the session state
		}
		switch e.Type {
		case event.SessionEnd:
			m.Ended = true
			t.write = true
		case event.SessionStart:
			m.Ended = false
			t.write = true
		case event.SSE:
			if e.EventID != "" && len(e.EventID) <= maxIndexPart && len(e.Stream) <= maxIndexPart {
				sc.key = sseKey(sc.key[:0], e.Session, e.Stream, e.EventID)
				sc.val = binary.BigEndian.AppendUint64(sc.val[:0], e.Seq)
				sc.put(sc.key, sc.val)
				keys++
			}
		}
	}
	runs, err := sc.setRuns(b, evs)
	if err != nil {
		return 0, err
	}
	keys += runs
	// Records that lagged long enough, of sessions without events here.
	due := s.dirtyHead
	for ; due < len(s.dirtyQ); due++ {
		d := s.dirtyQ[due]
		if !flushAll && now-d.since < int64(metaInterval) {
			break
		}
		st, ok := s.sessions[d.id]
		if !ok || !st.dirty || st.dirtySince != d.since {
			continue // written or forgotten since
		}
		if i, ok := sc.touched[d.id]; ok {
			sc.touches[i].write = true
			continue
		}
		sc.touched[d.id] = len(sc.touches)
		sc.touches = append(sc.touches, touch{st: st, next: st.meta, write: true})
	}
	for i := range sc.touches {
		t := &sc.touches[i]
		t.next.LastSeq = t.st.meta.LastSeq // the highest number reserved
		if !t.write {
			continue
		}
		sc.val = appendMeta(sc.val[:0], &t.next)
		sc.put(metaKey(sc.key[:0], t.st.id), sc.val)
		keys++
		if !t.st.stored {
			sc.put(startKey(sc.key[:0], t.next.Start, t.st.id), nil)
			keys++
		}
	}
	if keys == 0 {
		s.advanceDirty(due)
		return 0, nil
	}
	if err := sc.setSorted(b); err != nil {
		return 0, err
	}
	if err := c.Apply(b, wo); err != nil {
		return 0, err
	}
	s.advanceDirty(due)
	for i := range sc.touches {
		t := &sc.touches[i]
		t.st.meta = t.next
		t.st.stored = true
		switch {
		case t.write:
			t.st.dirty = false
		case !t.st.dirty:
			t.st.dirty, t.st.dirtySince = true, now
			s.dirtyQ = append(s.dirtyQ, dirtyEntry{t.st.id, now})
		}
	}
	for _, e := range evs {
		sc.touches[sc.touched[e.Session]].st.pending--
	}
	for i := range sc.touches {
		if t := &sc.touches[i]; t.st.meta.Ended && t.st.pending == 0 && !t.st.dirty {
			delete(s.sessions, t.st.id)
		}
	}
	s.evictLocked()
	return keys, nil
}

// unapply undoes in memory what commitEvents did for evs when their batch
// was applied but its sync then failed: the events are pending again, and
// their retry counts them in their sessions' metadata once more.
//
// A session forgotten since the batch was applied (it ended, or was
// evicted) is reloaded first: its record, or the events past it, are in
// the memtable and count the batch just as the cached state did.
func (s *Store) unapply(evs []*event.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var val []byte
	for _, e := range evs {
		st, err := s.state(e.Session)
		if err != nil {
			s.log.Warn("session state after a failed sync", "session", e.Session, "err", err)
			continue
		}
		st.pending++
		if !st.stored {
			continue // deleted since: nothing counts the batch
		}
		val = appendEvent(val[:0], e)
		st.meta.Events--
		st.meta.Bytes -= eventBytes(e.Session, len(val))
	}
}

// release gives up the numbers of events that will never be committed.
func (s *Store) release(evs []*event.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range evs {
		if st, ok := s.sessions[e.Session]; ok && e.Seq != 0 && st.pending > 0 {
			st.pending--
		}
	}
}

// evictLocked keeps the session cache within its bound, dropping sessions
// without pending events (their state is on disk).
func (s *Store) evictLocked() {
	if len(s.sessions) <= s.cacheSize {
		return
	}
	target := s.cacheSize * 9 / 10
	for id, st := range s.sessions {
		if len(s.sessions) <= target {
			return
		}
		if st.pending == 0 && !st.dirty {
			delete(s.sessions, id)
		}
	}
}

// SessionInfo describes a recorded session.
type SessionInfo struct {
	ID           string    `json:"id"`
	Route        string    `json:"route,omitempty"`
	Start        time.Time `json:"start"`
	LastActivity time.Time `json:"last_activity"`
	Events       uint64    `json:"events"`
	LastSeq      uint64    `json:"last_seq"`
	Bytes        uint64    `json:"bytes"`
	Ended        bool      `json:"ended"`
}

func infoOf(id string, m sessionMeta) SessionInfo {
	return SessionInfo{
		ID: id, Route: m.Route,
		Start:        time.Unix(0, m.Start).UTC(),
		LastActivity: time.Unix(0, m.LastActivity).UTC(),
		Events:       m.Events, LastSeq: m.LastSeq, Bytes: m.Bytes, Ended: m.Ended,
	}
}

// Session returns the metadata of one session.
func (s *Store) Session(id string) (SessionInfo, bool, error) {
	m, ok, err := s.currentMeta(id)
	if err != nil || !ok {
		return SessionInfo{}, ok, err
	}
	return infoOf(id, m), true, nil
}

// ErrBadCursor is returned for a paging cursor this store did not issue.
var ErrBadCursor = errors.New("bad cursor")

// ListSessions returns up to limit sessions, newest start first, after the
// position cursor ("" for the first page). next is the cursor of the
// following page, "" when this was the last.
func (s *Store) ListSessions(limit int, cursor string) (page []SessionInfo, next string, err error) {
	if limit <= 0 {
		limit = 100
	}
	upper := []byte{prefixStart + 1}
	if cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || len(raw) < 8 {
			return nil, "", ErrBadCursor
		}
		upper = append([]byte{prefixStart}, raw...)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixStart}, UpperBound: upper})
	if err != nil {
		return nil, "", fmt.Errorf("list sessions: %w", err)
	}
	defer it.Close()
	var last []byte
	for ok := it.Last(); ok; ok = it.Prev() {
		if len(page) == limit {
			return page, base64.RawURLEncoding.EncodeToString(last[1:]), nil
		}
		_, id, err := parseStartKey(it.Key())
		if err != nil {
			return nil, "", fmt.Errorf("list sessions: %w", err)
		}
		m, found, err := s.currentMeta(id)
		if err != nil {
			return nil, "", err
		}
		if !found {
			continue // deleted between the two reads
		}
		page = append(page, infoOf(id, m))
		last = append(last[:0], it.Key()...)
	}
	if err := it.Error(); err != nil {
		return nil, "", fmt.Errorf("list sessions: %w", err)
	}
	return page, "", nil
}

// Events returns up to limit events of session with seq > after, in order.
func (s *Store) Events(session string, after uint64, limit int) ([]*event.Event, error) {
	if limit <= 0 {
		limit = 1000
	}
	var out []*event.Event
	err := s.scan(context.Background(), session, after, func(e *event.Event) (bool, error) {
		out = append(out, e)
		return len(out) < limit, nil
	})
	return out, err
}

// scan calls fn for each event of session with seq > after, in order, until
// fn returns false or an error.
func (s *Store) scan(ctx context.Context, session string, after uint64, fn func(*event.Event) (bool, error)) error {
	return s.eachEncoded(ctx, session, after, func(seq uint64, enc []byte) (bool, error) {
		e := &event.Event{Session: session, Seq: seq}
		if err := decodeEvent(enc, e); err != nil {
			return false, fmt.Errorf("read session %q seq %d: %w", session, seq, err)
		}
		return fn(e)
	})
}

// eachEncoded calls fn with the number and v1 value of each stored event
// of session numbered above after, in order, until fn returns false or an
// error (which it returns as it is). It starts a run's length below after
// and reads each number once: a batch that a retry rewrote, grouped
// differently, may hold an event under two keys.
func (s *Store) eachEncoded(ctx context.Context, session string, after uint64, fn func(seq uint64, enc []byte) (bool, error)) error {
	if after == ^uint64(0) {
		return nil
	}
	prefix := appendSessionPrefix(nil, prefixEvent, session)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: eventKey(nil, session, runFloor(after+1)), UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fmt.Errorf("read session %q: %w", session, err)
	}
	defer it.Close()
	last, n := after, 0
	for ok := it.First(); ok; ok = it.Next() {
		if n++; n%256 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		id, seq, err := parseEventKey(it.Key())
		if err != nil || id != session {
			return fmt.Errorf("read session %q: corrupt key %x", session, it.Key())
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("read session %q seq %d: %w", session, seq, err)
		}
		more, fnErr := true, error(nil)
		err = forEachEncoded(v, func(i int, enc []byte) error {
			es := seq + uint64(i)
			if !more || es <= last {
				return nil // before after, or also under an earlier key
			}
			last = es
			if more, fnErr = fn(es, enc); fnErr != nil {
				more = false
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read session %q (key seq %d): %w", session, seq, err)
		}
		if !more {
			return fnErr
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("read session %q: %w", session, err)
	}
	return nil
}

// SSEAfter implements event.Replayer: it calls fn for each recorded SSE
// event of session and stream recorded after the last event with id
// lastEventID. It stops with ErrTruncatedEvent at an event whose data was
// recorded only in part.
func (s *Store) SSEAfter(ctx context.Context, session, stream, lastEventID string, fn func(*event.Event) error) (bool, error) {
	if len(lastEventID) > maxIndexPart || len(stream) > maxIndexPart || lastEventID == "" {
		return false, nil
	}
	v, closer, err := s.db.Get(sseKey(nil, session, stream, lastEventID))
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("replay session %q: %w", session, err)
	}
	if len(v) != 8 {
		closer.Close()
		return false, fmt.Errorf("replay session %q: corrupt id index entry", session)
	}
	seq := binary.BigEndian.Uint64(v)
	closer.Close()
	err = s.scan(ctx, session, seq, func(e *event.Event) (bool, error) {
		if e.Type != event.SSE || e.Stream != stream {
			return true, nil
		}
		if e.BodyBytes > int64(len(e.Data)) {
			// Sending part of an event would hand the client corrupt data.
			return false, fmt.Errorf("%w: id %q has %d of its %d data bytes (sessions.capture_body_bytes)",
				ErrTruncatedEvent, e.EventID, len(e.Data), e.BodyBytes)
		}
		return true, fn(e)
	})
	return true, err
}

// ErrTruncatedEvent stops a replay at an SSE event that was recorded only
// in part, because its data was longer than the capture limit.
var ErrTruncatedEvent = errors.New("replay stopped at an event recorded truncated")

var _ event.Replayer = (*Store)(nil)

// DeleteSession deletes every record of a session. It reports whether the
// session existed.
func (s *Store) DeleteSession(id string) (bool, error) {
	if s.readOnly {
		return false, errors.New("delete session: store opened read-only")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	found, err := s.deleteLocked(b, id)
	if err != nil || !found {
		return found, err
	}
	if err := s.db.Apply(b, pebble.Sync); err != nil {
		return false, fmt.Errorf("delete session %q: %w", id, err)
	}
	s.forgetLocked(id)
	return true, nil
}

// deleteLocked adds the deletion of session id to b.
func (s *Store) deleteLocked(b *pebble.Batch, id string) (bool, error) {
	m, found, err := s.getMeta(id)
	if err != nil {
		return false, err
	}
	if !found {
		return false, nil
	}
	ep := appendSessionPrefix(nil, prefixEvent, id)
	ip := appendSessionPrefix(nil, prefixSSEID, id)
	for _, op := range []func() error{
		func() error { return b.DeleteRange(ep, prefixEnd(ep), nil) },
		func() error { return b.DeleteRange(ip, prefixEnd(ip), nil) },
		func() error { return b.Delete(metaKey(nil, id), nil) },
		func() error { return b.Delete(startKey(nil, m.Start, id), nil) },
	} {
		if err := op(); err != nil {
			return false, fmt.Errorf("delete session %q: %w", id, err)
		}
	}
	return true, nil
}

// forgetLocked drops the writer state of a deleted session. Numbers held by
// pending events stay reserved so they are not handed out twice.
func (s *Store) forgetLocked(id string) {
	st, ok := s.sessions[id]
	if !ok {
		return
	}
	if st.pending == 0 {
		delete(s.sessions, id)
		return
	}
	st.meta = sessionMeta{LastSeq: st.meta.LastSeq}
	st.stored, st.dirty = false, false
}
