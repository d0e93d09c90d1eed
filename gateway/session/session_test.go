package session

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/event"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is an event.Sink that keeps what it is given.
type recorder struct {
	mu     sync.Mutex
	events []event.Event
}

func (r *recorder) Record(e *event.Event) bool {
	r.mu.Lock()
	r.events = append(r.events, *e)
	r.mu.Unlock()
	return true
}

func (r *recorder) all() []event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// ends returns session id → end reason for every SessionEnd recorded.
func (r *recorder) ends() map[string]string {
	m := map[string]string{}
	for _, e := range r.all() {
		if e.Type == event.SessionEnd {
			m[e.Session] = e.Message
		}
	}
	return m
}

func sessionsCfg(max int, idle, every time.Duration) config.Sessions {
	return config.Sessions{MaxSessions: max, IdleTimeout: config.Duration(idle), CleanupInterval: config.Duration(every)}
}

func sseCfg(ids, streams int, ttl time.Duration) config.SSE {
	return config.SSE{TrackedEventIDs: ids, TrackedStreams: streams, TrackedEventTTL: config.Duration(ttl)}
}

func newTestTable(t testing.TB, max int, idle time.Duration) (*Table, *recorder, *prometheus.Registry) {
	t.Helper()
	rec := &recorder{}
	reg := prometheus.NewRegistry()
	d := config.Default()
	return NewTable(sessionsCfg(max, idle, 10*time.Millisecond), d.SSE, rec, nil, reg), rec, reg
}

func TestTouch(t *testing.T) {
	tbl, rec, _ := newTestTable(t, 10, time.Hour)

	steps := []struct {
		id, route   string
		wantStarted bool
		wantReqs    uint64
		wantRoute   string
	}{
		{"a", "r1", true, 1, "r1"},
		{"a", "r1", false, 2, "r1"},
		{"b", "r2", true, 1, "r2"},
		{"a", "r2", false, 3, "r1"}, // the starting route stays
	}
	for i, st := range steps {
		before := time.Now()
		s, started, err := tbl.Touch(st.id, st.route)
		if err != nil {
			t.Fatalf("step %d: Touch(%q): %v", i, st.id, err)
		}
		if started != st.wantStarted || s.Requests() != st.wantReqs || s.Route != st.wantRoute || s.ID != st.id {
			t.Errorf("step %d: got started=%v requests=%d route=%q id=%q, want %v %d %q %q",
				i, started, s.Requests(), s.Route, s.ID, st.wantStarted, st.wantReqs, st.wantRoute, st.id)
		}
		if s.LastSeen().Before(before.Truncate(time.Microsecond)) {
			t.Errorf("step %d: LastSeen %v before the call at %v", i, s.LastSeen(), before)
		}
	}
	if tbl.Len() != 2 {
		t.Errorf("Len = %d, want 2", tbl.Len())
	}
	got, ok := tbl.Get("a")
	if !ok || got.Requests() != 3 {
		t.Errorf("Get(a) = %v, %v", got, ok)
	}
	if _, ok := tbl.Get("zz"); ok {
		t.Error("Get(zz) found a session that was never touched")
	}
	var starts []string
	for _, e := range rec.all() {
		if e.Type != event.SessionStart {
			t.Errorf("unexpected event %v", e.Type)
		}
		starts = append(starts, e.Session+"@"+e.Route)
	}
	if want := []string{"a@r1", "b@r2"}; !slices.Equal(starts, want) {
		t.Errorf("SessionStart events %v, want %v", starts, want)
	}
}

func TestTouchInvalidID(t *testing.T) {
	tbl, rec, _ := newTestTable(t, 10, time.Hour)
	for _, tc := range []struct {
		name string
		id   string
		ok   bool
	}{
		{"empty", "", false},
		{"space", "a b", false},
		{"control", "a\x00b", false},
		{"del", "a\x7f", false},
		{"non-ascii", "sessión", false},
		{"too long", strings.Repeat("x", MaxIDLength+1), false},
		{"longest", strings.Repeat("y", MaxIDLength), true},
		{"ulid", NewID(), true},
		{"punctuation", "a-b_c.d~e:f/g=", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := tbl.Touch(tc.id, "r")
			if tc.ok && err != nil {
				t.Fatalf("Touch: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidID) {
				t.Fatalf("Touch: err %v, want ErrInvalidID", err)
			}
		})
	}
	if n := len(rec.all()); n != 3 {
		t.Errorf("%d events recorded, want 3 (one start per valid id)", n)
	}
}

func TestFull(t *testing.T) {
	tbl, rec, reg := newTestTable(t, 2, time.Hour)
	for _, id := range []string{"a", "b"} {
		if _, _, err := tbl.Touch(id, "r"); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if _, _, err := tbl.Touch("c", "r"); !errors.Is(err, ErrFull) {
			t.Fatalf("Touch(c) on a full table: %v, want ErrFull", err)
		}
	}
	// Known sessions keep working on a full table.
	if _, started, err := tbl.Touch("a", "r"); err != nil || started {
		t.Fatalf("Touch(a) on a full table: started=%v err=%v", started, err)
	}
	if got := value(tbl.metrics.rejectedFull); got != 3 {
		t.Errorf("rejected_full = %v, want 3", got)
	}
	if !tbl.End("b", ReasonDeleted) {
		t.Fatal("End(b) = false")
	}
	if _, started, err := tbl.Touch("c", "r"); err != nil || !started {
		t.Fatalf("Touch(c) after End(b): started=%v err=%v", started, err)
	}
	if tbl.Len() != 2 {
		t.Errorf("Len = %d, want 2", tbl.Len())
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"wasmgate_sessions_active", "wasmgate_sessions_rejected_full_total", "wasmgate_sessions_started_total", "wasmgate_sessions_ended_total"} {
		if !names[n] {
			t.Errorf("registry lacks %s (has %v)", n, names)
		}
	}
	if got := value(tbl.metrics.active); got != 2 {
		t.Errorf("active gauge = %v, want 2", got)
	}
	if got := rec.ends(); !maps2Equal(got, map[string]string{"b": ReasonDeleted}) {
		t.Errorf("ends %v", got)
	}
}

// value reads a gauge or counter.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

func maps2Equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestEnd(t *testing.T) {
	tbl, rec, _ := newTestTable(t, 10, time.Hour)
	tbl.Touch("a", "r")
	for _, tc := range []struct {
		id, reason string
		want       bool
	}{
		{"a", ReasonDeleted, true},
		{"a", ReasonDeleted, false}, // already gone
		{"never", ReasonDeleted, false},
	} {
		if got := tbl.End(tc.id, tc.reason); got != tc.want {
			t.Errorf("End(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
	evs := rec.all()
	if len(evs) != 2 || evs[1].Type != event.SessionEnd || evs[1].Message != ReasonDeleted || evs[1].Route != "r" {
		t.Fatalf("events %+v", evs)
	}
	if got := value(tbl.metrics.ended.WithLabelValues(ReasonDeleted)); got != 1 {
		t.Errorf("ended{deleted} = %v, want 1", got)
	}
	// A new session under the same id starts afresh.
	if _, started, _ := tbl.Touch("a", "r"); !started {
		t.Error("Touch after End did not start a new session")
	}
}

func TestIdleExpiry(t *testing.T) {
	const idle = 300 * time.Millisecond
	tbl, rec, _ := newTestTable(t, 10, idle)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tbl.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	tbl.Touch("busy", "r")
	tbl.Touch("idle", "r")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, _, err := tbl.Touch("busy", "r"); err != nil {
			t.Fatal(err)
		}
		if _, ok := tbl.Get("idle"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("idle session not expired within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, ok := tbl.Get("busy"); !ok {
		t.Fatal("a session touched every 5ms was expired")
	}
	if got := rec.ends(); got["idle"] != ReasonIdle || len(got) != 1 {
		t.Errorf("ends %v, want idle:idle", got)
	}
	if tbl.Len() != 1 || value(tbl.metrics.active) != 1 {
		t.Errorf("Len %d, active %v; want 1", tbl.Len(), value(tbl.metrics.active))
	}
}

// TestSweep drives sweep with chosen clocks, so no sleeping is needed.
func TestSweep(t *testing.T) {
	for _, tc := range []struct {
		name string
		idle time.Duration
		age  time.Duration // how long ago the session was touched
		gone bool
	}{
		{"fresh", time.Minute, 0, false},
		{"just under", time.Minute, time.Minute - time.Millisecond, false},
		{"over", time.Minute, time.Minute + time.Millisecond, true},
		{"expiry disabled", 0, 1000 * time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl, rec, _ := newTestTable(t, 10, tc.idle)
			s, _, _ := tbl.Touch("s", "r")
			tbl.sweep(s.LastSeen().Add(tc.age))
			_, ok := tbl.Get("s")
			if ok == tc.gone {
				t.Fatalf("after sweep present=%v, want gone=%v", ok, tc.gone)
			}
			if tc.gone && rec.ends()["s"] != ReasonIdle {
				t.Errorf("ends %v", rec.ends())
			}
		})
	}
}

func TestClose(t *testing.T) {
	tbl, rec, _ := newTestTable(t, 100, time.Hour)
	for i := range 50 {
		tbl.Touch(fmt.Sprint("s", i), "r")
	}
	tbl.Close()
	if tbl.Len() != 0 {
		t.Errorf("Len after Close = %d", tbl.Len())
	}
	ends := rec.ends()
	if len(ends) != 50 {
		t.Errorf("%d SessionEnd events, want 50", len(ends))
	}
	for id, reason := range ends {
		if reason != ReasonShutdown {
			t.Errorf("%s ended with %q", id, reason)
		}
	}
	if _, _, err := tbl.Touch("new", "r"); !errors.Is(err, ErrClosed) {
		t.Errorf("Touch after Close: %v, want ErrClosed", err)
	}
	if got := value(tbl.metrics.ended.WithLabelValues(ReasonShutdown)); got != 50 {
		t.Errorf("ended{shutdown} = %v", got)
	}
}

func TestSnapshot(t *testing.T) {
	tbl, _, _ := newTestTable(t, 100, time.Hour)
	for i := range 5 {
		tbl.Touch(fmt.Sprint("s", i), fmt.Sprint("r", i))
		time.Sleep(time.Millisecond) // distinct start times
	}
	tbl.Touch("s1", "r1")
	s3, _ := tbl.Get("s3")
	s3.TrackEventID("r3 /sse", "41")
	s3.TrackEventID("r3 /sse", "42")
	s3.TrackEventID("r3 /other", "x")

	for _, tc := range []struct {
		limit int
		want  []string
	}{
		{0, []string{"s4", "s3", "s2", "s1", "s0"}},
		{2, []string{"s4", "s3"}},
		{10, []string{"s4", "s3", "s2", "s1", "s0"}},
	} {
		infos := tbl.Snapshot(tc.limit)
		var got []string
		for _, in := range infos {
			got = append(got, in.ID)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Snapshot(%d) = %v, want %v", tc.limit, got, tc.want)
		}
	}
	byID := map[string]Info{}
	for _, in := range tbl.Snapshot(0) {
		byID[in.ID] = in
	}
	if in := byID["s1"]; in.Requests != 2 || in.Route != "r1" || in.LastSeen.Before(in.Started) {
		t.Errorf("s1 info %+v", in)
	}
	if got := byID["s3"].LastEventIDs; len(got) != 2 || got["r3 /sse"] != "42" || got["r3 /other"] != "x" {
		t.Errorf("s3 last event ids %v", got)
	}
	if got := byID["s0"].LastEventIDs; got != nil {
		t.Errorf("s0 last event ids %v, want nil", got)
	}
}

func TestTrackEventIDs(t *testing.T) {
	type op struct {
		track         bool // TrackEventID, else check KnowsEventID
		stream, id    string
		want          bool
		sleepAfterTTL bool
	}
	for _, tc := range []struct {
		name    string
		ids     int
		streams int
		ttl     time.Duration
		ops     []op
		evicted float64
	}{
		{
			name: "ring keeps the last N", ids: 3, streams: 4,
			ops: []op{
				{track: true, stream: "s", id: "1"}, {track: true, stream: "s", id: "2"},
				{track: true, stream: "s", id: "3"}, {track: true, stream: "s", id: "4"},
				{stream: "s", id: "1", want: false}, {stream: "s", id: "2", want: true},
				{stream: "s", id: "4", want: true}, {stream: "other", id: "4", want: false},
				{track: true, stream: "s", id: "5"}, {track: true, stream: "s", id: "6"},
				{stream: "s", id: "3", want: false}, {stream: "s", id: "4", want: true},
				{stream: "s", id: "6", want: true}, {stream: "s", id: "", want: false},
			},
		},
		{
			name: "streams beyond the bound evict the least recently used", ids: 5, streams: 2,
			ops: []op{
				{track: true, stream: "a", id: "1"}, {track: true, stream: "b", id: "1"},
				{track: true, stream: "a", id: "2"}, // a is now newer than b
				{track: true, stream: "c", id: "1"}, // evicts b
				{stream: "a", id: "1", want: true}, {stream: "b", id: "1", want: false},
				{stream: "c", id: "1", want: true},
			},
			evicted: 1,
		},
		{
			name: "ids expire after the TTL", ids: 5, streams: 2, ttl: 250 * time.Millisecond,
			ops: []op{
				{track: true, stream: "a", id: "old", sleepAfterTTL: true},
				{track: true, stream: "a", id: "new"},
				{stream: "a", id: "old", want: false}, {stream: "a", id: "new", want: true},
			},
		},
		{
			name: "tracking disabled", ids: 0, streams: 2,
			ops: []op{{track: true, stream: "a", id: "1"}, {stream: "a", id: "1", want: false}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := NewTable(sessionsCfg(10, time.Hour, time.Second), sseCfg(tc.ids, tc.streams, tc.ttl), nil, nil, prometheus.NewRegistry())
			s, _, _ := tbl.Touch("sess", "r")
			for i, o := range tc.ops {
				if o.track {
					s.TrackEventID(o.stream, o.id)
					if o.sleepAfterTTL {
						time.Sleep(tc.ttl + 5*time.Millisecond)
					}
					continue
				}
				if got := s.KnowsEventID(o.stream, o.id); got != o.want {
					t.Errorf("op %d: KnowsEventID(%q, %q) = %v, want %v", i, o.stream, o.id, got, o.want)
				}
			}
			if got := value(tbl.metrics.streamsEvicted); got != tc.evicted {
				t.Errorf("streams evicted = %v, want %v", got, tc.evicted)
			}
		})
	}
}

func TestLastEventIDAndRingCapacity(t *testing.T) {
	tbl := NewTable(sessionsCfg(10, time.Hour, time.Second), sseCfg(100, 4, time.Hour), nil, nil, nil)
	s, _, _ := tbl.Touch("sess", "r")
	if _, ok := s.LastEventID("st"); ok {
		t.Fatal("LastEventID on an untracked stream")
	}
	for i := range 250 {
		id := fmt.Sprint(i)
		s.TrackEventID("st", id)
		if got, ok := s.LastEventID("st"); !ok || got != id {
			t.Fatalf("after tracking %s LastEventID = %q, %v", id, got, ok)
		}
	}
	st := s.stream("st")
	if len(st.ids) != 100 || cap(st.ids) != 100 {
		t.Errorf("ring len %d cap %d, want 100/100", len(st.ids), cap(st.ids))
	}
	if s.KnowsEventID("st", "149") || !s.KnowsEventID("st", "150") {
		t.Error("ring should hold exactly ids 150..249")
	}
}

func TestPruneStreams(t *testing.T) {
	tbl := NewTable(sessionsCfg(10, time.Hour, time.Second), sseCfg(10, 4, time.Minute), nil, nil, nil)
	s, _, _ := tbl.Touch("sess", "r")
	s.TrackEventID("old", "1")
	s.TrackEventID("new", "1")
	s.stream("old").last -= int64(2 * time.Minute)
	tbl.sweep(time.Now())
	if s.stream("old") != nil || s.stream("new") == nil || s.nStreams.Load() != 1 {
		t.Errorf("after sweep streams = %d, want only the fresh one", len(s.streams))
	}
}

func TestNewID(t *testing.T) {
	const goroutines, per = 8, 500
	var mu sync.Mutex
	seen := make(map[string]bool, goroutines*per)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			local := make([]string, per)
			for i := range local {
				local[i] = NewID()
			}
			if !slices.IsSorted(local) {
				t.Error("ids from one goroutine are not increasing")
			}
			mu.Lock()
			for _, id := range local {
				seen[id] = true
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(seen) != goroutines*per {
		t.Fatalf("%d distinct ids, want %d", len(seen), goroutines*per)
	}
	id := NewID()
	u, err := ulid.ParseStrict(id)
	if err != nil {
		t.Fatalf("ParseStrict(%q): %v", id, err)
	}
	if d := time.Since(ulid.Time(u.Time())); d < 0 || d > time.Minute {
		t.Errorf("ulid time off by %v", d)
	}
	if !ValidID(id) {
		t.Errorf("NewID %q is not a valid session id", id)
	}
}

// TestConcurrent hammers one table from many goroutines (run it with
// -race) and then checks the books balance: every start has an end or is
// still in the table, and the gauge agrees.
func TestConcurrent(t *testing.T) {
	tbl, rec, _ := newTestTable(t, 64, 2*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tbl.Run(ctx); close(done) }()

	var wg sync.WaitGroup
	var full int
	var fullMu sync.Mutex
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 3000 {
				id := fmt.Sprint("s", r.IntN(100))
				switch r.IntN(10) {
				case 0:
					tbl.End(id, ReasonDeleted)
				case 1:
					if s, ok := tbl.Get(id); ok {
						s.TrackEventID(fmt.Sprint("stream", r.IntN(20)), fmt.Sprint(i))
						s.KnowsEventID("stream1", "5")
					}
				case 2:
					tbl.Snapshot(5)
				default:
					_, _, err := tbl.Touch(id, "r")
					if errors.Is(err, ErrFull) {
						fullMu.Lock()
						full++
						fullMu.Unlock()
					} else if err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	cancel()
	<-done
	if tbl.Len() > 64 {
		t.Errorf("Len %d exceeds max_sessions", tbl.Len())
	}
	live := tbl.Len()
	tbl.Close()
	var starts, ends int
	open := map[string]int{}
	for _, e := range rec.all() {
		switch e.Type {
		case event.SessionStart:
			starts++
			open[e.Session]++
		case event.SessionEnd:
			ends++
			open[e.Session]--
		}
	}
	if starts != ends {
		t.Errorf("%d starts, %d ends after Close", starts, ends)
	}
	for id, n := range open {
		if n != 0 {
			t.Errorf("session %s: starts minus ends = %d", id, n)
		}
	}
	if got := value(tbl.metrics.active); got != 0 {
		t.Errorf("active gauge %v after Close", got)
	}
	if got := int(value(tbl.metrics.rejectedFull)); got != full {
		t.Errorf("rejected_full %d, counted %d", got, full)
	}
	t.Logf("starts %d, live before close %d, full %d", starts, live, full)
}

func TestSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := NewTable(sessionsCfg(10, time.Hour, time.Second), config.SSE{}, nil, nil, reg)
	b := NewTable(sessionsCfg(10, time.Hour, time.Second), config.SSE{}, nil, nil, reg)
	a.Touch("x", "r")
	b.Touch("y", "r")
	if got := value(a.metrics.started); got != 2 {
		t.Errorf("two tables on one registry share the counter: got %v, want 2", got)
	}
}

// BenchmarkTouch measures the request-path cost of touching a known session
// from parallel goroutines, sharded (the table as built) against a single
// shard (one RWMutex for the whole table).
func BenchmarkTouch(b *testing.B) {
	for _, shards := range []int{defaultShards, 1} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			tbl := newTable(sessionsCfg(1<<20, time.Hour, time.Second), config.SSE{}, nil, nil, nil, shards)
			ids := make([]string, 4096)
			for i := range ids {
				ids[i] = NewID()
				tbl.Touch(ids[i], "r")
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := rand.IntN(len(ids))
				for pb.Next() {
					if _, started, err := tbl.Touch(ids[i&(len(ids)-1)], "r"); err != nil || started {
						b.Fatal("touch of a known session failed or started", err)
					}
					i++
				}
			})
		})
	}
}

// BenchmarkTouchStart measures starting a new session (allocates the
// session and its SessionStart event).
func BenchmarkTouchStart(b *testing.B) {
	tbl := NewTable(sessionsCfg(1<<30, time.Hour, time.Second), config.SSE{}, event.Discard, nil, nil)
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = fmt.Sprint("id", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		tbl.Touch(ids[i], "r")
	}
}

func BenchmarkTrackEventID(b *testing.B) {
	tbl := NewTable(sessionsCfg(10, time.Hour, time.Second), config.Default().SSE, nil, nil, nil)
	s, _, _ := tbl.Touch("s", "r")
	ids := make([]string, 256)
	for i := range ids {
		ids[i] = fmt.Sprint(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		s.TrackEventID("route /sse", ids[i&255])
	}
}

func TestReconfigure(t *testing.T) {
	rec := &recorder{}
	tbl := NewTable(sessionsCfg(2, time.Hour, time.Hour), sseCfg(4, 2, time.Hour), rec, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tbl.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	tbl.Touch("a", "r")
	tbl.Touch("b", "r")
	if _, _, err := tbl.Touch("c", "r"); !errors.Is(err, ErrFull) {
		t.Fatalf("Touch(c): %v, want ErrFull", err)
	}
	tbl.Reconfigure(sessionsCfg(3, time.Hour, time.Hour), sseCfg(4, 2, time.Hour))
	if _, _, err := tbl.Touch("c", "r"); err != nil {
		t.Fatalf("Touch(c) after raising max_sessions: %v", err)
	}

	// Shorter idle timeout and cleanup interval: the running loop (whose
	// ticker was at 1h) picks them up and expires everything.
	tbl.Reconfigure(sessionsCfg(3, 20*time.Millisecond, 5*time.Millisecond), sseCfg(4, 2, time.Hour))
	deadline := time.Now().Add(5 * time.Second)
	for tbl.Len() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions left 5s after shortening idle_timeout", tbl.Len())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ends := rec.ends(); len(ends) != 3 || ends["a"] != ReasonIdle {
		t.Errorf("ends %v", ends)
	}
}

func TestReconfigureTracking(t *testing.T) {
	ids := func(from, to int) []string {
		var out []string
		for i := from; i <= to; i++ {
			out = append(out, fmt.Sprint(i))
		}
		return out
	}
	for _, tc := range []struct {
		name        string
		before      int // tracked_event_ids before
		tracked     int // ids 1..tracked tracked before the change
		after       int
		more        int // ids tracked after the change
		wantKnown   []string
		wantUnknown []string
		wantLast    string
	}{
		{"lower after wrap", 4, 6, 2, 1, ids(6, 7), ids(1, 5), "7"},
		{"lower before wrap", 4, 3, 2, 1, ids(3, 4), ids(1, 2), "4"},
		{"raise after wrap", 3, 5, 5, 2, ids(3, 7), ids(1, 2), "7"},
		{"raise then wrap again", 3, 5, 4, 3, ids(5, 8), ids(1, 4), "8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := NewTable(sessionsCfg(10, time.Hour, time.Hour), sseCfg(tc.before, 2, time.Hour), nil, nil, nil)
			s, _, _ := tbl.Touch("s", "r")
			for i := 1; i <= tc.tracked; i++ {
				s.TrackEventID("st", fmt.Sprint(i))
			}
			tbl.Reconfigure(sessionsCfg(10, time.Hour, time.Hour), sseCfg(tc.after, 2, time.Hour))
			for i := tc.tracked + 1; i <= tc.tracked+tc.more; i++ {
				s.TrackEventID("st", fmt.Sprint(i))
			}
			for _, id := range tc.wantKnown {
				if !s.KnowsEventID("st", id) {
					t.Errorf("id %s forgotten", id)
				}
			}
			for _, id := range tc.wantUnknown {
				if s.KnowsEventID("st", id) {
					t.Errorf("id %s still known", id)
				}
			}
			if last, _ := s.LastEventID("st"); last != tc.wantLast {
				t.Errorf("LastEventID %q, want %q", last, tc.wantLast)
			}
			if st := s.stream("st"); tc.more > 0 && (len(st.ids) > tc.after || cap(st.ids) > max(tc.after, tc.before)) {
				t.Errorf("ring len %d cap %d after limit %d", len(st.ids), cap(st.ids), tc.after)
			}
		})
	}
}

// BenchmarkTouchChurn mixes session churn into the request path: one
// operation in 16 ends a session and starts a new one (write locks), the
// rest touch known sessions. A single shard makes every write stall all
// readers; shards confine it to 1/64 of the table.
func BenchmarkTouchChurn(b *testing.B) {
	for _, shards := range []int{defaultShards, 1} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			tbl := newTable(sessionsCfg(1<<20, time.Hour, time.Second), config.SSE{}, nil, nil, nil, shards)
			ids := make([]string, 4096)
			for i := range ids {
				ids[i] = NewID()
				tbl.Touch(ids[i], "r")
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := rand.IntN(len(ids))
				for pb.Next() {
					id := ids[i&(len(ids)-1)]
					if i&15 == 0 {
						tbl.End(id, ReasonDeleted)
					}
					if _, _, err := tbl.Touch(id, "r"); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		})
	}
}

func TestTouchBytes(t *testing.T) {
	tbl, rec, _ := newTestTable(t, 10, time.Hour)
	buf := []byte("hdr:abc")
	s1, started, err := tbl.TouchBytes(buf[4:], "r")
	if err != nil || !started || s1.ID != "abc" {
		t.Fatalf("first TouchBytes: %v %v %v", s1, started, err)
	}
	copy(buf[4:], "xyz") // the caller reuses its buffer
	if s1.ID != "abc" {
		t.Fatalf("session id aliases the caller's buffer: %q", s1.ID)
	}
	s2, started, err := tbl.TouchBytes([]byte("abc"), "r")
	if err != nil || started || s2 != s1 || s1.Requests() != 2 {
		t.Fatalf("second TouchBytes: same=%v started=%v err=%v requests=%d", s2 == s1, started, err, s1.Requests())
	}
	if s3, _, _ := tbl.Touch("abc", "r"); s3 != s1 {
		t.Fatal("Touch and TouchBytes disagree on the session")
	}
	for _, bad := range [][]byte{nil, []byte("a b"), make([]byte, MaxIDLength+1)} {
		if _, _, err := tbl.TouchBytes(bad, "r"); !errors.Is(err, ErrInvalidID) {
			t.Errorf("TouchBytes(%q): %v, want ErrInvalidID", bad, err)
		}
	}
	if n := len(rec.all()); n != 1 {
		t.Errorf("%d events, want 1", n)
	}
	allocs := testing.AllocsPerRun(100, func() { tbl.TouchBytes(buf[:3], "r") })
	if _, ok := tbl.Get("hdr"); !ok {
		t.Fatal("hdr not started")
	}
	if allocs != 0 {
		t.Errorf("TouchBytes of a known session allocates %v times", allocs)
	}
}

// BenchmarkTouchBytes is the proxy's call: the id is still in the request
// buffer.
func BenchmarkTouchBytes(b *testing.B) {
	tbl := NewTable(sessionsCfg(1<<20, time.Hour, time.Second), config.SSE{}, nil, nil, nil)
	ids := make([][]byte, 4096)
	for i := range ids {
		ids[i] = []byte(NewID())
		tbl.TouchBytes(ids[i], "r")
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(len(ids))
		for pb.Next() {
			if _, started, err := tbl.TouchBytes(ids[i&(len(ids)-1)], "r"); err != nil || started {
				b.Fatal("touch of a known session failed or started", err)
			}
			i++
		}
	})
}

// BenchmarkSweep is one cleanup pass over a table of 100,000 live sessions
// of which none expire: the loop's steady-state cost every
// cleanup_interval.
func BenchmarkSweep(b *testing.B) {
	tbl := NewTable(sessionsCfg(1<<20, time.Hour, time.Second), config.Default().SSE, nil, nil, nil)
	for i := range 100_000 {
		s, _, _ := tbl.Touch(fmt.Sprint("s", i), "r")
		if i%10 == 0 {
			s.TrackEventID("r /sse", "1")
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		tbl.sweep(time.Now())
	}
	if tbl.Len() != 100_000 {
		b.Fatalf("sweep expired %d fresh sessions", 100_000-tbl.Len())
	}
}

// TestCloseRacesTouch: sessions started while Close runs are either ended
// by it or refused; none outlives it without a SessionEnd.
func TestCloseRacesTouch(t *testing.T) {
	for round := range 100 {
		tbl, rec, _ := newTestTable(t, 1<<20, time.Hour)
		var wg sync.WaitGroup
		var running sync.WaitGroup
		for g := range 2 {
			running.Add(1)
			wg.Go(func() {
				for i := 0; ; i++ {
					if i == 20 {
						running.Done()
					}
					_, _, err := tbl.Touch(fmt.Sprint(round, "-", g, "-", i), "r")
					if errors.Is(err, ErrClosed) {
						return
					}
				}
			})
		}
		running.Wait()
		tbl.Close()
		wg.Wait()
		if tbl.Len() != 0 {
			t.Fatalf("round %d: %d sessions left after Close", round, tbl.Len())
		}
		starts, ends := 0, 0
		for _, e := range rec.all() {
			switch e.Type {
			case event.SessionStart:
				starts++
			case event.SessionEnd:
				ends++
			}
		}
		if starts != ends {
			t.Fatalf("round %d: %d starts, %d ends", round, starts, ends)
		}
	}
}

// TestStartRecordedBeforeEnd: an End racing a session's start never
// records its SessionEnd before the SessionStart.
func TestStartRecordedBeforeEnd(t *testing.T) {
	rec := &slowStartRecorder{}
	tbl := NewTable(sessionsCfg(1<<20, time.Hour, time.Hour), config.SSE{}, rec, nil, nil)
	for i := range 200 {
		id := fmt.Sprint("s", i)
		var wg sync.WaitGroup
		wg.Go(func() { tbl.Touch(id, "r") })
		wg.Go(func() {
			for !tbl.End(id, ReasonDeleted) {
				runtime.Gosched()
			}
		})
		wg.Wait()
	}
	seen := map[string]event.Type{}
	for _, e := range rec.all() {
		if e.Type == event.SessionEnd && seen[e.Session] != event.SessionStart {
			t.Fatalf("session %s: SessionEnd recorded before SessionStart", e.Session)
		}
		seen[e.Session] = e.Type
	}
	if len(seen) != 200 {
		t.Fatalf("%d sessions recorded, want 200", len(seen))
	}
}

// slowStartRecorder dawdles over SessionStart, widening the window in
// which an End can overtake it.
type slowStartRecorder struct{ recorder }

func (r *slowStartRecorder) Record(e *event.Event) bool {
	if e.Type == event.SessionStart {
		time.Sleep(100 * time.Microsecond)
	}
	return r.recorder.Record(e)
}
