package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmgate/wasmgate/gateway/event"
)

func openTest(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// record writes evs through a real worker and closes it (which flushes).
func record(t testing.TB, s *Store, evs ...*event.Event) {
	t.Helper()
	w, err := NewWorker(s, WorkerOptions{FlushInterval: time.Millisecond, EnqueueTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if !w.Record(e) {
			t.Fatalf("Record(%+v) shed", e)
		}
	}
	w.Close()
}

func TestSeqDurableAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	record(t, s,
		&event.Event{Session: "a", Type: event.SessionStart},
		&event.Event{Session: "b", Type: event.SessionStart},
		&event.Event{Session: "a", Type: event.Request, Method: "GET"},
	)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	defer s.Close()
	record(t, s, &event.Event{Session: "a", Type: event.Response, Status: 200})
	evs, err := s.Events("a", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%d:%s", e.Seq, e.Type))
	}
	if want := "[1:session_start 2:request 3:response]"; fmt.Sprint(got) != want {
		t.Fatalf("events of a = %v, want %s", got, want)
	}
	info, ok, err := s.Session("a")
	if err != nil || !ok || info.LastSeq != 3 || info.Events != 3 {
		t.Fatalf("Session(a) = %+v %v %v", info, ok, err)
	}
}

func TestQueriesPaging(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	t0 := time.Now().Add(-time.Hour)
	var evs []*event.Event
	for i := range 25 {
		id := fmt.Sprintf("s%02d", i)
		evs = append(evs, &event.Event{Session: id, Type: event.SessionStart, Time: t0.Add(time.Duration(i) * time.Second)})
		for j := range 7 {
			evs = append(evs, &event.Event{Session: id, Type: event.Request, Path: fmt.Sprint("/", j), Time: t0.Add(time.Duration(i)*time.Second + 1)})
		}
	}
	record(t, s, evs...)

	var ids []string
	cursor := ""
	pages := 0
	for {
		page, next, err := s.ListSessions(10, cursor)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, p := range page {
			ids = append(ids, p.ID)
			if p.Events != 8 || p.LastSeq != 8 {
				t.Errorf("session %s: %d events, last seq %d; want 8", p.ID, p.Events, p.LastSeq)
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if pages != 3 || len(ids) != 25 || ids[0] != "s24" || ids[24] != "s00" {
		t.Fatalf("%d pages, ids %v: want 3 pages newest first", pages, ids)
	}
	if _, _, err := s.ListSessions(10, "!!"); err != ErrBadCursor {
		t.Fatalf("bad cursor: %v", err)
	}

	var seqs []uint64
	after := uint64(0)
	for {
		page, err := s.Events("s07", after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			seqs = append(seqs, e.Seq)
		}
		after = page[len(page)-1].Seq
	}
	if fmt.Sprint(seqs) != "[1 2 3 4 5 6 7 8]" {
		t.Fatalf("paged seqs %v", seqs)
	}

	found, err := s.DeleteSession("s07")
	if err != nil || !found {
		t.Fatalf("DeleteSession = %v %v", found, err)
	}
	if found, _ := s.DeleteSession("s07"); found {
		t.Fatal("second delete found the session")
	}
	if evs, _ := s.Events("s07", 0, 0); len(evs) != 0 {
		t.Fatalf("%d events left after delete", len(evs))
	}
	if _, ok, _ := s.Session("s07"); ok {
		t.Fatal("metadata left after delete")
	}
	page, _, _ := s.ListSessions(100, "")
	if len(page) != 24 {
		t.Fatalf("%d sessions listed after delete, want 24", len(page))
	}
	// A deleted session that comes back starts a new record.
	record(t, s, &event.Event{Session: "s07", Type: event.SessionStart})
	if evs, _ := s.Events("s07", 0, 0); len(evs) != 1 || evs[0].Seq != 1 {
		t.Fatalf("recreated session: %+v", evs)
	}
}

func TestSSEAfter(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	sse := func(stream, id, data string) *event.Event {
		return &event.Event{Session: "x", Type: event.SSE, Stream: stream, EventID: id, Data: []byte(data)}
	}
	record(t, s,
		sse("r /a", "1", "one"),
		sse("r /b", "1", "other stream"),
		sse("r /a", "2", "two"),
		&event.Event{Session: "x", Type: event.Request, Path: "/a"},
		sse("r /a", "", "no id"),
		sse("r /a", "3", "three"),
	)
	// A second batch repeats id 2 (an upstream resuming): the index moves
	// to the latest occurrence.
	record(t, s, sse("r /a", "2", "two again"), sse("r /a", "4", "four"))

	replay := func(stream, id string) (bool, []string) {
		var got []string
		found, err := s.SSEAfter(context.Background(), "x", stream, id, func(e *event.Event) error {
			got = append(got, string(e.Data))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return found, got
	}
	for _, tc := range []struct {
		stream, id string
		found      bool
		want       string
	}{
		{"r /a", "1", true, "[two no id three two again four]"},
		{"r /a", "2", true, "[four]"},
		{"r /a", "3", true, "[two again four]"},
		{"r /a", "4", true, "[]"},
		{"r /b", "1", true, "[]"},
		{"r /a", "9", false, "[]"},
		{"r /c", "1", false, "[]"},
		{"r /a", "", false, "[]"},
	} {
		found, got := replay(tc.stream, tc.id)
		if found != tc.found || fmt.Sprint(got) != tc.want {
			t.Errorf("SSEAfter(%q, %q) = %v %v, want %v %s", tc.stream, tc.id, found, got, tc.found, tc.want)
		}
	}
	// An event recorded in part ends the replay with an error instead of
	// sending corrupt data.
	record(t, s, &event.Event{Session: "x", Type: event.SSE, Stream: "r /a", EventID: "5", Data: []byte("fi"), BodyBytes: 4},
		sse("r /a", "6", "six"))
	var got []string
	_, err := s.SSEAfter(context.Background(), "x", "r /a", "3", func(e *event.Event) error {
		got = append(got, string(e.Data))
		return nil
	})
	if !errors.Is(err, ErrTruncatedEvent) || fmt.Sprint(got) != "[two again four]" {
		t.Fatalf("replay over a truncated event: %v, %v", got, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	stop := fmt.Errorf("stop")
	_, err = s.SSEAfter(ctx, "x", "r /a", "1", func(*event.Event) error { return stop })
	if err != stop {
		t.Fatalf("callback error not returned: %v", err)
	}
}

func TestRetention(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	now := time.Now()
	old := now.Add(-48 * time.Hour)
	record(t, s,
		&event.Event{Session: "old", Type: event.SessionStart, Time: old},
		&event.Event{Session: "old", Type: event.SessionEnd, Time: old.Add(time.Minute)},
		// Started long ago but still active: kept.
		&event.Event{Session: "long", Type: event.SessionStart, Time: old},
		&event.Event{Session: "long", Type: event.Request, Time: now},
		&event.Event{Session: "new", Type: event.SessionStart, Time: now},
	)
	n, err := s.ExpireIdle(now.Add(-24 * time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("ExpireIdle = %d, %v; want 1", n, err)
	}
	page, _, _ := s.ListSessions(10, "")
	if len(page) != 2 || page[0].ID != "new" || page[1].ID != "long" {
		t.Fatalf("after retention: %+v", page)
	}
	if evs, _ := s.Events("old", 0, 0); len(evs) != 0 {
		t.Fatalf("expired session still has %d events", len(evs))
	}

	// Size cap: many sessions of ~1 KiB; a cap of 10 KiB keeps the newest.
	var evs []*event.Event
	for i := range 50 {
		evs = append(evs, &event.Event{Session: fmt.Sprintf("z%02d", i), Type: event.Request,
			Body: make([]byte, 1000), Time: now.Add(time.Duration(i) * time.Second)})
	}
	record(t, s, evs...)
	n, err = s.EnforceMaxBytes(10 << 10)
	if err != nil || n < 40 {
		t.Fatalf("EnforceMaxBytes = %d, %v; want ≥ 40 deleted", n, err)
	}
	live, _ := s.LiveBytes()
	if live > 10<<10 {
		t.Fatalf("live bytes %d over the cap", live)
	}
	page, _, _ = s.ListSessions(1, "")
	if page[0].ID != "z49" {
		t.Fatalf("newest session %q deleted by the size cap", page[0].ID)
	}
}

func TestReadOnly(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	record(t, s, &event.Event{Session: "a", Type: event.SessionStart})
	// Pebble locks the directory even for a read-only open.
	if _, err := Open(dir, Options{ReadOnly: true}); err == nil {
		t.Fatal("read-only open of a store held by another handle succeeded")
	}
	s.Close()
	ro, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if evs, err := ro.Events("a", 0, 0); err != nil || len(evs) != 1 {
		t.Fatalf("read-only Events = %v, %v", evs, err)
	}
	if _, err := ro.DeleteSession("a"); err == nil {
		t.Fatal("delete on a read-only store succeeded")
	}
	if _, err := NewWorker(ro, WorkerOptions{}); err == nil {
		t.Fatal("worker on a read-only store started")
	}
	if _, err := Open(t.TempDir()+"/missing", Options{ReadOnly: true}); err == nil {
		t.Fatal("read-only open of a missing store succeeded")
	}
}

// TestSessionCacheEviction: with a tiny cache, sessions are evicted and
// their numbering resumes from the store.
func TestSessionCacheEviction(t *testing.T) {
	s, err := Open(t.TempDir(), Options{SessionCacheSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for round := range 3 {
		var evs []*event.Event
		for i := range 20 {
			evs = append(evs, &event.Event{Session: fmt.Sprint("c", i), Type: event.Request, Message: fmt.Sprint(round)})
		}
		record(t, s, evs...)
		if n := len(s.sessions); n > 4 {
			t.Fatalf("round %d: %d sessions cached, bound 4", round, n)
		}
	}
	for i := range 20 {
		evs, _ := s.Events(fmt.Sprint("c", i), 0, 0)
		if len(evs) != 3 || evs[2].Seq != 3 || evs[2].Message != "2" {
			t.Fatalf("session c%d: %+v", i, evs)
		}
	}
}

// TestRunRetention: the loop applies retention at start and stops with
// its context.
func TestRunRetention(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	record(t, s,
		&event.Event{Session: "stale", Type: event.SessionStart, Time: time.Now().Add(-2 * time.Hour)},
		&event.Event{Session: "fresh", Type: event.SessionStart},
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.RunRetention(ctx, time.Hour, time.Hour, 1<<30); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok, _ := s.Session("stale"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("retention loop did not delete the stale session")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if _, ok, _ := s.Session("fresh"); !ok {
		t.Fatal("fresh session deleted")
	}
}

// TestMetaLagsAndRecovers: a session's metadata record is not rewritten
// with every batch (metaInterval), yet readers, a crash image of the store
// (a Pebble checkpoint of the running store) and the writer after it see
// every committed event; Close writes the lagging record.
func TestMetaLagsAndRecovers(t *testing.T) {
	defer func(d time.Duration) { metaInterval = d }(metaInterval)
	metaInterval = time.Hour
	dir := t.TempDir()
	s := openTest(t, dir)
	defer s.Close()
	w, err := NewWorker(s, WorkerOptions{FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	committed := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if evs, _ := s.Events("a", 0, 0); len(evs) == n {
				return
			}
		}
		t.Fatalf("%d events not committed", n)
	}
	for i := 1; i <= 3; i++ {
		w.Record(&event.Event{Session: "a", Type: event.Request, Message: fmt.Sprint(i)})
		committed(i) // one batch each
	}
	raw, _, err := s.getMeta("a")
	if err != nil {
		t.Fatal(err)
	}
	if raw.Events != 1 {
		t.Fatalf("metadata record counts %d events: it was rewritten with every batch", raw.Events)
	}
	info, _, err := s.Session("a")
	if err != nil || info.Events != 3 || info.LastSeq != 3 {
		t.Fatalf("Session: %+v, %v; want 3 events", info, err)
	}
	page, _, err := s.ListSessions(10, "")
	if err != nil || len(page) != 1 || page[0].Events != 3 || page[0].Bytes != info.Bytes {
		t.Fatalf("ListSessions: %+v, %v", page, err)
	}

	crash := filepath.Join(t.TempDir(), "crash")
	if err := s.db.Checkpoint(crash); err != nil {
		t.Fatal(err)
	}
	c := openTest(t, crash)
	defer c.Close()
	if info2, _, _ := c.Session("a"); info2 != info {
		t.Fatalf("after a crash: %+v, want %+v", info2, info)
	}
	record(t, c, &event.Event{Session: "a", Type: event.Request, Message: "4"})
	evs, _ := c.Events("a", 0, 0)
	if len(evs) != 4 || evs[3].Seq != 4 || evs[3].Message != "4" {
		t.Fatalf("after a crash, numbering did not resume above the events on disk: %+v", evs)
	}
	if raw, _, _ := c.getMeta("a"); raw.Events != 4 || raw.LastSeq != 4 {
		t.Fatalf("record after Close: %+v", raw)
	}

	w.Close()
	if raw, _, _ := s.getMeta("a"); raw.Events != 3 || raw.Bytes != info.Bytes {
		t.Fatalf("record after Close: %+v, want 3 events, %d bytes", raw, info.Bytes)
	}
}

// TestMetaWrittenWhenIdle: a lagging metadata record is written once it
// has lagged metaInterval, also when no further event comes.
func TestMetaWrittenWhenIdle(t *testing.T) {
	defer func(d time.Duration) { metaInterval = d }(metaInterval)
	metaInterval = 20 * time.Millisecond
	s := openTest(t, t.TempDir())
	defer s.Close()
	w, err := NewWorker(s, WorkerOptions{FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 3 {
		w.Record(&event.Event{Session: "idle", Type: event.Request, Message: fmt.Sprint(i)})
		time.Sleep(3 * time.Millisecond)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		raw, _, err := s.getMeta("idle")
		if err != nil {
			t.Fatal(err)
		}
		if raw.Events == 3 && raw.LastSeq == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("record still at %+v", raw)
		}
	}
	if _, dirty := s.hasDirty(); dirty {
		t.Error("a record still lags after it was written")
	}
}

// TestMetaRetryBelowRecord: an event retried after a newer event of its
// session committed has a number below the one the session's record
// holds, where readers and crash recovery (which add only the events
// stored past that number) do not look; its batch writes the record.
func TestMetaRetryBelowRecord(t *testing.T) {
	defer func(d time.Duration) { metaInterval = d }(metaInterval)
	metaInterval = time.Hour
	s := openTest(t, t.TempDir())
	defer s.Close()
	now := time.Now()
	a := &event.Event{Session: "x", Type: event.Plugin, Message: "a", Time: now}
	b := &event.Event{Session: "x", Type: event.Plugin, Message: "b", Time: now}
	fc := &flakyCommitter{db: s.db}
	fc.failing.Store(true)
	if _, err := s.commitEvents([]*event.Event{a}, fc, pebble.Sync, &writeScratch{}, false); err == nil {
		t.Fatal("injected failure did not fail the commit")
	}
	commitBatch(t, s, b) // seq 2, the session's first record: last seq 2
	commitBatch(t, s, a) // the retry of seq 1
	want := eventBytes("x", len(appendEvent(nil, a))) + eventBytes("x", len(appendEvent(nil, b)))
	info, _, err := s.Session("x")
	if err != nil || info.Events != 2 || info.LastSeq != 2 || info.Bytes != want {
		t.Fatalf("Session: %+v, %v; want 2 events, %d bytes", info, err, want)
	}
	crash := filepath.Join(t.TempDir(), "crash")
	if err := s.db.Checkpoint(crash); err != nil {
		t.Fatal(err)
	}
	c := openTest(t, crash)
	defer c.Close()
	if got, _, _ := c.Session("x"); got != info {
		t.Fatalf("after a crash: %+v, want %+v", got, info)
	}
}
