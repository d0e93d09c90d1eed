package store

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/wasmgate/wasmgate/gateway/event"
)

// commitBatch writes evs as one batch, as the worker does, and returns the
// number of keys.
func commitBatch(t *testing.T, s *Store, evs ...*event.Event) int {
	t.Helper()
	keys, err := s.commitEvents(evs, s.db, pebble.Sync, &writeScratch{}, false)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// eventKeys counts the "e" keys of session.
func eventKeys(t *testing.T, s *Store, session string) int {
	t.Helper()
	prefix := appendSessionPrefix(nil, prefixEvent, session)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n
}

// checkPages reads session back with every cursor and page size up to 3
// and checks each page holds exactly the events after the cursor, whole.
func checkPages(t *testing.T, s *Store, session string, want []string) {
	t.Helper()
	for after := 0; after <= len(want); after++ {
		for limit := 1; limit <= 3; limit++ {
			evs, err := s.Events(session, uint64(after), limit)
			if err != nil {
				t.Fatalf("Events(%q, %d, %d): %v", session, after, limit, err)
			}
			end := min(after+limit, len(want))
			if len(evs) != end-after {
				t.Fatalf("Events(%q, %d, %d): %d events, want %d", session, after, limit, len(evs), end-after)
			}
			for i, e := range evs {
				if e.Seq != uint64(after+i+1) || e.Message != want[after+i] || e.Session != session {
					t.Fatalf("Events(%q, %d, %d)[%d] = %d %q, want %d %q", session, after, limit, i, e.Seq, e.Message, after+i+1, want[after+i])
				}
			}
		}
	}
}

func TestRuns(t *testing.T) {
	big := strings.Repeat("x", maxRunBytes)
	for _, tc := range []struct {
		name string
		// msgs per session, in batch order "session:message"
		batch []string
		keys  map[string]int // "e" keys per session
	}{
		{"interleaved sessions", []string{"a:1", "b:1", "a:2", "a:3", "b:2", "c:1"}, map[string]int{"a": 1, "b": 1, "c": 1}},
		{"split at maxRunEvents", seqMsgs("a", maxRunEvents+6), map[string]int{"a": 2}},
		{"an outsized event stands alone", []string{"a:1", "a:" + big, "a:3", "a:4"}, map[string]int{"a": 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, t.TempDir())
			defer s.Close()
			var evs []*event.Event
			want := map[string][]string{}
			for _, sm := range tc.batch {
				id, msg, _ := strings.Cut(sm, ":")
				evs = append(evs, &event.Event{Session: id, Type: event.Plugin, Message: msg, Time: time.Unix(1, 0)})
				want[id] = append(want[id], msg)
			}
			commitBatch(t, s, evs...)
			for id, msgs := range want {
				if n := eventKeys(t, s, id); n != tc.keys[id] {
					t.Errorf("session %q: %d keys, want %d", id, n, tc.keys[id])
				}
				checkPages(t, s, id, msgs)
				info, _, err := s.Session(id)
				if err != nil || info.Events != uint64(len(msgs)) || info.LastSeq != uint64(len(msgs)) {
					t.Fatalf("Session(%q) = %+v, %v", id, info, err)
				}
			}
		})
	}
}

func seqMsgs(session string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s:%d", session, i+1)
	}
	return out
}

// TestRunsRecoverAfterCrash: events written as runs after the session's
// metadata record count after a crash, as single events do.
func TestRunsRecoverAfterCrash(t *testing.T) {
	defer func(d time.Duration) { metaInterval = d }(metaInterval)
	metaInterval = time.Hour
	s := openTest(t, t.TempDir())
	defer s.Close()
	ev := func(msg string, typ event.Type) *event.Event {
		return &event.Event{Session: "a", Type: typ, Message: msg, Time: time.Unix(int64(len(msg)), 0)}
	}
	commitBatch(t, s, ev("1", event.SessionStart)) // writes the metadata record
	commitBatch(t, s, ev("22", event.Request), ev("333", event.Response), ev("4444", event.Plugin))
	if raw, _, _ := s.getMeta("a"); raw.Events != 1 {
		t.Fatalf("metadata record rewritten: %+v", raw)
	}
	info, _, err := s.Session("a")
	if err != nil || info.Events != 4 || info.LastSeq != 4 || info.LastActivity.Unix() != 4 {
		t.Fatalf("Session: %+v, %v", info, err)
	}
	var bytes uint64
	for _, e := range []*event.Event{ev("1", event.SessionStart), ev("22", event.Request), ev("333", event.Response), ev("4444", event.Plugin)} {
		bytes += eventBytes("a", len(appendEvent(nil, e)))
	}
	if info.Bytes != bytes {
		t.Fatalf("Session bytes %d, want %d", info.Bytes, bytes)
	}

	crash := filepath.Join(t.TempDir(), "crash")
	if err := s.db.Checkpoint(crash); err != nil {
		t.Fatal(err)
	}
	c := openTest(t, crash)
	defer c.Close()
	if got, _, _ := c.Session("a"); got != info {
		t.Fatalf("after a crash: %+v, want %+v", got, info)
	}
	commitBatch(t, c, ev("55555", event.Request))
	checkPages(t, c, "a", []string{"1", "22", "333", "4444", "55555"})
}

// TestRunsOverlap: a batch retried after a commit that did land (but
// reported failure) rewrites its events, possibly grouped differently;
// each event still reads back once and counts once.
func TestRunsOverlap(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	evs := make([]*event.Event, 4)
	for i := range evs {
		evs[i] = &event.Event{Session: "a", Type: event.Plugin, Message: fmt.Sprint(i + 1)}
	}
	landed := &landedCommitter{db: s.db}
	landed.fails.Store(2)
	for _, b := range [][]*event.Event{
		{evs[0], evs[1], evs[2]}, // one run, seqs 1-3
		{evs[2]},                 // seq 3 again, alone
	} {
		if _, err := s.commitEvents(b, landed, pebble.Sync, &writeScratch{}, false); err == nil {
			t.Fatal("injected failure did not fail the commit")
		}
	}
	commitBatch(t, s, evs[1], evs[2], evs[3]) // seqs 2-4 as a run: 4 is new
	commitBatch(t, s, evs[0])                 // seq 1 alone
	if n := eventKeys(t, s, "a"); n != 3 {
		t.Fatalf("%d keys, want 3", n)
	}
	checkPages(t, s, "a", []string{"1", "2", "3", "4"})
	if info, _, err := s.Session("a"); err != nil || info.Events != 4 || info.LastSeq != 4 {
		t.Fatalf("Session: %+v, %v; want 4 events", info, err)
	}
}

func TestForEachEncodedRejects(t *testing.T) {
	one := appendEvent(nil, &event.Event{Type: event.Request, Method: "GET"})
	good := appendRun(nil, [][]byte{one, one})
	for _, tc := range []struct {
		name string
		v    []byte
	}{
		{"empty", nil},
		{"run of one", appendRun(nil, [][]byte{one})},
		{"count past the value", append([]byte{encodingRun, 100}, good[2:]...)},
		{"truncated member", good[:len(good)-1]},
		{"trailing bytes", append(bytes.Clone(good), 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := forEachEncoded(tc.v, func(int, []byte) error { return nil })
			if err == nil {
				t.Fatal("accepted")
			}
		})
	}
	n := 0
	if err := forEachEncoded(good, func(i int, enc []byte) error {
		if i != n || !bytes.Equal(enc, one) {
			t.Fatalf("member %d = %x", i, enc)
		}
		n++
		return nil
	}); err != nil || n != 2 {
		t.Fatalf("good run: %d members, %v", n, err)
	}
}

func FuzzForEachEncoded(f *testing.F) {
	one := appendEvent(nil, &event.Event{Type: event.SSE, EventID: "7", Data: []byte("hi")})
	f.Add(appendRun(nil, [][]byte{one, one, one}))
	f.Add(one)
	f.Fuzz(func(t *testing.T, v []byte) {
		_ = forEachEncoded(v, func(i int, enc []byte) error {
			var e event.Event
			_ = decodeEvent(enc, &e)
			return nil
		})
	})
}

// TestLayoutVersion: a version 1 store (no runs) opens and is marked 2
// before anything is written; a store of an unknown layout does not open.
func TestLayoutVersion(t *testing.T) {
	for _, tc := range []struct {
		stored, after string
		ok            bool
	}{
		{layoutVersion1, layoutVersion, true},
		{layoutVersion, layoutVersion, true},
		{"wasmgate-store/9", "wasmgate-store/9", false},
	} {
		t.Run(tc.stored, func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, dir)
			if err := s.db.Set([]byte(keyVersion), []byte(tc.stored), pebble.Sync); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s, err := Open(dir, Options{})
			if (err == nil) != tc.ok {
				t.Fatalf("Open: %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				return
			}
			defer s.Close()
			v, closer, err := s.db.Get([]byte(keyVersion))
			if err != nil {
				t.Fatal(err)
			}
			defer closer.Close()
			if string(v) != tc.after {
				t.Fatalf("layout %q after Open, want %q", v, tc.after)
			}
		})
	}
}
