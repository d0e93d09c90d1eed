package event

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
)

// emptyPool drops every free event and sets the pool's limit to n for the
// test, restoring the default after it.
func emptyPool(t testing.TB, n int) {
	t.Helper()
	SetPoolLimit(0)
	SetPoolLimit(n)
	t.Cleanup(func() { SetPoolLimit(-1) })
	if s := ReadPoolStats(); s.Free != 0 {
		t.Fatalf("pool not empty: %+v", s)
	}
}

// cycle takes n events from New, fills each like a recorded request, and
// releases them all.
func cycle(n int) {
	evs := make([]*Event, n)
	for i := range evs {
		e := New()
		e.RequestID = e.KeepString([]byte("0123456789abcdef"))
		e.AddHeader([]byte("Host"), []byte("example.test"))
		evs[i] = e
	}
	for _, e := range evs {
		e.Release()
	}
}

// TestPoolKeepsEventsAcrossGC checks what a sync.Pool does not do: events
// released before two collections are still there to reuse after them.
func TestPoolKeepsEventsAcrossGC(t *testing.T) {
	emptyPool(t, 64)
	cycle(32)
	before := ReadPoolStats()
	if before.Free != 32 || before.Allocated < 32 {
		t.Fatalf("after the first cycle: %+v", before)
	}
	runtime.GC()
	runtime.GC()
	cycle(32)
	if allocs := testing.AllocsPerRun(100, func() {
		e := New()
		e.AddHeader([]byte("Mcp-Session-Id"), []byte("s-1"))
		e.Release()
	}); allocs != 0 {
		t.Errorf("a New/Release cycle after two collections allocated %v objects", allocs)
	}
	after := ReadPoolStats()
	if after.Allocated != before.Allocated || after.Discarded != before.Discarded || after.Free != 32 {
		t.Errorf("pool across two collections: before %+v, after %+v", before, after)
	}
}

// TestPoolBound checks that the pool keeps at most its limit and counts
// what it lets go.
func TestPoolBound(t *testing.T) {
	const limit, extra = 8, 5
	emptyPool(t, limit)
	s0 := ReadPoolStats()
	cycle(limit + extra)
	s1 := ReadPoolStats()
	if s1.Free != limit || s1.Allocated-s0.Allocated != limit+extra || s1.Discarded-s0.Discarded != extra {
		t.Fatalf("released %d events into a pool of %d: before %+v, after %+v", limit+extra, limit, s0, s1)
	}
	// The kept events serve the next limit News; one more allocates.
	cycle(limit)
	if s2 := ReadPoolStats(); s2.Allocated != s1.Allocated || s2.Free != limit {
		t.Fatalf("reusing %d events: %+v, then %+v", limit, s1, s2)
	}
	cycle(limit + 1)
	s3 := ReadPoolStats()
	if s3.Allocated != s1.Allocated+1 || s3.Discarded != s1.Discarded+1 {
		t.Fatalf("one past the limit: %+v, then %+v", s1, s3)
	}
	// A discarded event is done with: releasing it again changes nothing.
	f := New()
	SetPoolLimit(limit - 1) // full
	f.Release()
	s4 := ReadPoolStats()
	f.Release()
	if s5 := ReadPoolStats(); s5 != s4 || s4.Discarded != s3.Discarded+1 || f.state != literal {
		t.Fatalf("Release into a full pool, then again: %+v, then %+v (state %d)", s4, s5, f.state)
	}
}

// TestPoolOutsized checks that an event whose storage grew past the reuse
// bounds is left to the collector, whatever room the pool has.
func TestPoolOutsized(t *testing.T) {
	emptyPool(t, 64)
	bigBody := New()
	bigBody.Body = bigBody.Keep(make([]byte, maxPooledBytes+1))
	manyHeaders := New()
	for range maxPooledHeaders + 1 {
		manyHeaders.Headers = append(manyHeaders.Headers, Header{"a", "b"})
	}
	s0 := ReadPoolStats()
	for _, e := range []*Event{bigBody, manyHeaders} {
		e.Release()
		if e.state != literal {
			t.Errorf("outsized event left in state %d", e.state)
		}
	}
	if s1 := ReadPoolStats(); s1.Free != 0 || s1.Discarded-s0.Discarded != 2 {
		t.Fatalf("outsized events: before %+v, after %+v", s0, s1)
	}
}

// TestSetPoolLimit checks a lower limit drops (and counts) what the pool
// holds past it, 0 keeps nothing, and a negative limit restores the default.
func TestSetPoolLimit(t *testing.T) {
	emptyPool(t, 16)
	cycle(16)
	s0 := ReadPoolStats()
	SetPoolLimit(10)
	if s1 := ReadPoolStats(); s1.Free != 10 || s1.Discarded-s0.Discarded != 6 || PoolLimit() != 10 {
		t.Fatalf("limit 16 -> 10: %+v, then %+v, limit %d", s0, s1, PoolLimit())
	}
	SetPoolLimit(0)
	s2 := ReadPoolStats()
	cycle(3)
	if s3 := ReadPoolStats(); s3.Free != 0 || s3.Allocated-s2.Allocated != 3 || s3.Discarded-s2.Discarded != 3 {
		t.Fatalf("limit 0: %+v, then %+v", s2, s3)
	}
	SetPoolLimit(-7)
	if PoolLimit() != DefaultPoolLimit {
		t.Fatalf("negative limit gave %d, want the default %d", PoolLimit(), DefaultPoolLimit)
	}
}

// TestPoolConcurrent runs producers and releasers at once (for -race) and
// checks the books balance: every event allocated is free, discarded, or
// still held.
func TestPoolConcurrent(t *testing.T) {
	const limit = 32
	emptyPool(t, limit)
	s0 := ReadPoolStats()
	ch := make(chan *Event, 64)
	var wg sync.WaitGroup
	// Each event carries its owner's unique mark from New to Release: an
	// event handed to two owners at once, or reset while held, shows
	// another mark (or none) to one of them.
	for p := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				mark := fmt.Sprintf("p%d-%d", p, i)
				e := New()
				if e.Session != "" || e.Seq != 0 {
					t.Errorf("New returned a used event: %q/%d", e.Session, e.Seq)
				}
				e.Session, e.Seq = e.KeepString([]byte(mark)), uint64(p*2000+i)
				if i%3 == 0 {
					runtime.Gosched()
					if e.Session != mark || e.Seq != uint64(p*2000+i) {
						t.Errorf("event changed while its producer held it: %q/%d, want %q", e.Session, e.Seq, mark)
					}
					e.Release() // released by its producer
					continue
				}
				ch <- e
			}
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range ch {
			p, i := e.Seq/2000, e.Seq%2000
			if want := fmt.Sprintf("p%d-%d", p, i); e.Session != want {
				t.Errorf("event changed while held: %q, want %q", e.Session, want)
			}
			e.Release()
		}
	}()
	wg.Wait()
	close(ch)
	<-done
	s1 := ReadPoolStats()
	if s1.Free > limit || s1.Allocated-s0.Allocated != uint64(s1.Free)+s1.Discarded-s0.Discarded {
		t.Fatalf("books do not balance: before %+v, after %+v", s0, s1)
	}
}

// The sync.Pool the free list replaced, kept as the benchmarks' baseline.
var syncPool = sync.Pool{New: func() any { return newPooledEvent() }}

func syncPoolNew() *Event {
	e := syncPool.Get().(*Event)
	e.state = owned
	return e
}

func syncPoolRelease(e *Event) {
	if e != nil && e.state == owned && e.reset() {
		syncPool.Put(e)
	}
}

var poolImpls = []struct {
	name    string
	new     func() *Event
	release func(*Event)
}{
	{"free-list", New, (*Event).Release},
	{"sync.Pool", syncPoolNew, syncPoolRelease},
}

var (
	benchNames = [][]byte{[]byte("Host"), []byte("User-Agent"), []byte("Accept"), []byte("Mcp-Session-Id"), []byte("X-Request-Id")}
	benchValue = []byte("some-header-value-0123456789")
)

func fill(e *Event) {
	e.RequestID = e.KeepString(benchValue)
	for _, n := range benchNames {
		e.AddHeader(n, benchValue)
	}
}

// BenchmarkNewRelease is the cost of an event from the pool holding a
// request's worth of headers, against the sync.Pool it replaced: no
// allocation once the pool is warm. parallel takes and releases events
// on every P at once, the lock's worst case.
func BenchmarkNewRelease(b *testing.B) {
	for _, impl := range poolImpls {
		b.Run(impl.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e := impl.new()
				fill(e)
				impl.release(e)
			}
		})
		b.Run(impl.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					e := impl.new()
					fill(e)
					impl.release(e)
				}
			})
		})
	}
}

// BenchmarkNewReleaseHandoff is the recorder's pattern: one goroutine
// takes and fills events (the proxy), another releases them (the store
// worker), 64 at a time; per event.
func BenchmarkNewReleaseHandoff(b *testing.B) {
	for _, impl := range poolImpls {
		b.Run(impl.name, func(b *testing.B) {
			const batch = 64
			batches := make(chan []*Event, 4)
			spare := make(chan []*Event, 5)
			for range cap(spare) {
				spare <- make([]*Event, batch)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				for evs := range batches {
					for _, e := range evs {
						impl.release(e)
					}
					spare <- evs
				}
			}()
			b.ReportAllocs()
			for i := 0; i < b.N; i += batch {
				evs := <-spare
				for j := range evs {
					evs[j] = impl.new()
					fill(evs[j])
				}
				batches <- evs
			}
			close(batches)
			<-done
		})
	}
}

// BenchmarkNewReleaseAcrossGC takes a burst of 256 events, releases them,
// and collects garbage twice, as when traffic pauses for two collections:
// the sync.Pool loses its events and allocates the whole next burst.
func BenchmarkNewReleaseAcrossGC(b *testing.B) {
	for _, impl := range poolImpls {
		b.Run(impl.name, func(b *testing.B) {
			evs := make([]*Event, 256)
			b.ReportAllocs()
			for b.Loop() {
				for i := range evs {
					evs[i] = impl.new()
					fill(evs[i])
				}
				for _, e := range evs {
					impl.release(e)
				}
				runtime.GC()
				runtime.GC()
			}
		})
	}
}
