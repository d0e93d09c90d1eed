package session

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Session is one live session. ID, Route and Started never change; the
// rest is read through methods.
type Session struct {
	ID string
	// Route is the route of the request that started the session.
	Route   string
	Started time.Time

	lastSeen atomic.Int64 // unix ns
	requests atomic.Uint64

	track    *trackLimits
	nStreams atomic.Int32 // len(streams), readable without mu
	mu       sync.Mutex
	streams  []*trackedStream
}

// LastSeen is the time of the session's latest request.
func (s *Session) LastSeen() time.Time { return time.Unix(0, s.lastSeen.Load()) }

// Requests is how many requests the session has made.
func (s *Session) Requests() uint64 { return s.requests.Load() }

// trackLimits are the table-wide bounds of event-id tracking.
type trackLimits struct {
	ids     atomic.Int64 // ids per stream (sse.tracked_event_ids); 0 disables tracking
	streams atomic.Int64 // streams per session (sse.tracked_streams)
	ttl     atomic.Int64 // ns; 0 means ids never expire
	evicted prometheus.Counter
}

// trackedStream is a ring of the last event ids seen on one stream.
type trackedStream struct {
	name string
	ids  []trackedID // grows up to trackLimits.ids, then wraps
	head int         // index of the newest entry
	last int64       // unix ns of the latest TrackEventID
}

type trackedID struct {
	id string
	at int64
}

func (s *Session) stream(name string) *trackedStream {
	for _, st := range s.streams {
		if st.name == name {
			return st
		}
	}
	return nil
}

// TrackEventID remembers that event id passed on stream (named as
// event.Event.Stream is). It keeps the last sse.tracked_event_ids ids per
// stream and at most sse.tracked_streams streams; a new stream past that
// replaces the least recently used one. An empty id is ignored.
func (s *Session) TrackEventID(stream, id string) {
	maxIDs, maxStreams := int(s.track.ids.Load()), int(s.track.streams.Load())
	if id == "" || maxIDs <= 0 || maxStreams <= 0 {
		return
	}
	now := time.Now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stream(stream)
	if st == nil {
		st = &trackedStream{name: stream, ids: make([]trackedID, 0, min(maxIDs, 8))}
		if len(s.streams) < maxStreams {
			s.streams = append(s.streams, st)
			s.nStreams.Store(int32(len(s.streams)))
		} else {
			lru := 0
			for i, o := range s.streams {
				if o.last < s.streams[lru].last {
					lru = i
				}
			}
			s.streams[lru] = st
			s.track.evicted.Inc()
		}
	}
	st.last = now
	if len(st.ids) > maxIDs {
		st.shrink(maxIDs) // the limit was lowered by a reload
	}
	if len(st.ids) < maxIDs {
		if len(st.ids) == cap(st.ids) {
			// Grow by hand so that capacity never passes the limit.
			grown := make([]trackedID, len(st.ids), min(2*cap(st.ids), maxIDs))
			st.copyOldestFirst(grown)
			st.ids = grown
		} else if len(st.ids) > 0 && st.head != len(st.ids)-1 {
			// The limit was raised after the ring had wrapped: unwrap it
			// so that appending keeps the order.
			unwrapped := make([]trackedID, len(st.ids), cap(st.ids))
			st.copyOldestFirst(unwrapped)
			st.ids = unwrapped
		}
		st.ids = append(st.ids, trackedID{id, now})
		st.head = len(st.ids) - 1
		return
	}
	st.head++
	if st.head == len(st.ids) {
		st.head = 0
	}
	st.ids[st.head] = trackedID{id, now}
}

// KnowsEventID reports whether id is among the ids tracked on stream and
// still within sse.tracked_event_ttl.
func (s *Session) KnowsEventID(stream, id string) bool {
	if id == "" {
		return false
	}
	now := time.Now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stream(stream)
	if st == nil {
		return false
	}
	for _, e := range st.ids {
		if e.id == id && s.fresh(e.at, now) {
			return true
		}
	}
	return false
}

// LastEventID returns the latest id tracked on stream, if it is within its
// TTL.
func (s *Session) LastEventID(stream string) (string, bool) {
	now := time.Now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.stream(stream); st != nil {
		if e, ok := st.newest(); ok && s.fresh(e.at, now) {
			return e.id, true
		}
	}
	return "", false
}

// copyOldestFirst copies the ring into dst (len(dst) == len(st.ids)) from
// the oldest entry to the newest.
func (st *trackedStream) copyOldestFirst(dst []trackedID) {
	if len(st.ids) == 0 {
		return
	}
	n := copy(dst, st.ids[st.head+1:])
	copy(dst[n:], st.ids[:st.head+1])
}

// shrink keeps the newest n entries.
func (st *trackedStream) shrink(n int) {
	all := make([]trackedID, len(st.ids))
	st.copyOldestFirst(all)
	st.ids = append(make([]trackedID, 0, n), all[len(all)-n:]...)
	st.head = n - 1
}

func (s *Session) fresh(at, now int64) bool {
	ttl := s.track.ttl.Load()
	return ttl <= 0 || now-at <= ttl
}

func (st *trackedStream) newest() (trackedID, bool) {
	if len(st.ids) == 0 {
		return trackedID{}, false
	}
	return st.ids[st.head], true
}

func (s *Session) lastEventIDs(now int64) map[string]string {
	if s.nStreams.Load() == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var m map[string]string
	for _, st := range s.streams {
		if e, ok := st.newest(); ok && s.fresh(e.at, now) {
			if m == nil {
				m = make(map[string]string, len(s.streams))
			}
			m[st.name] = e.id
		}
	}
	return m
}

// pruneStreams forgets streams whose latest id is past its TTL, so a
// long-lived session does not keep the ids of streams it closed long ago.
func (s *Session) pruneStreams(now int64) {
	ttl := s.track.ttl.Load()
	if ttl <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.streams[:0]
	for _, st := range s.streams {
		if now-st.last <= ttl {
			kept = append(kept, st)
		}
	}
	clear(s.streams[len(kept):])
	s.streams = kept
	s.nStreams.Store(int32(len(kept)))
}
