package store

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/wasmgate/wasmgate/gateway/event"
	"github.com/wasmgate/wasmgate/internal/bench/cputime"
)

// BenchmarkWorker measures events/s through Record → batch → synced Pebble
// commit with the default storage settings (batch 50, queue 10,000, sync,
// commits pipelined 64 deep with a log sync at most every 10ms), ~300-byte
// events over 10,000 interleaved sessions. depth=1 commits one batch at a
// time, each with its own sync; events/sync shows how many events share
// a log sync.
func BenchmarkWorker(b *testing.B) {
	for _, bc := range []struct {
		name   string
		batch  int
		depth  int
		noSync bool
	}{
		{"sync/batch=50", 50, 0, false},
		{"sync/batch=50/depth=1", 50, 1, false},
		{"sync/batch=200", 200, 0, false},
		{"nosync/batch=50", 50, 0, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var interval time.Duration
			if bc.depth != 1 {
				interval = 10 * time.Millisecond
			}
			s, err := Open(b.TempDir(), Options{MinSyncInterval: interval})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			w, err := NewWorker(s, WorkerOptions{BatchSize: bc.batch, SyncDepth: bc.depth, NoSync: bc.noSync, EnqueueTimeout: time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			ids := make([]string, 10000)
			for i := range ids {
				ids[i] = fmt.Sprintf("01JSESSION%016d", i)
			}
			body := make([]byte, 200)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				w.Record(&event.Event{Session: ids[i%len(ids)], Type: event.Request, Route: "mcp",
					Method: "POST", Path: "/mcp", Body: body, BodyBytes: 200,
					Headers: []event.Header{{Name: "Content-Type", Value: "application/json"}}})
			}
			w.Close()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			if n := s.walSyncs(); n > 0 {
				b.ReportMetric(float64(b.N)/float64(n), "events/sync")
			}
			b.StopTimer()
		})
	}
}

// BenchmarkWorkerPaced measures the CPU the recorder costs per event at a
// steady gateway-like rate (16,000 events/s from 32 producers, the
// request and response events of 8,000 req/s over 1,000 sessions), which
// is what recording adds to each proxied request. sink=discard runs the
// same producers into event.Discard; the difference in cpu-µs/event is the
// worker's share (sink=nosync: the same without fdatasync). A saturating benchmark (BenchmarkWorker) hides the
// per-event wake-up and scheduling costs that pacing exposes.
func BenchmarkWorkerPaced(b *testing.B) {
	const (
		producers = 32
		rate      = 16000 // events/s, all producers together
	)
	for _, sink := range []string{"discard", "worker", "nosync"} {
		b.Run("sink="+sink, func(b *testing.B) {
			var sk event.Sink = event.Discard
			var w *Worker
			if sink != "discard" {
				s, err := Open(b.TempDir(), Options{MinSyncInterval: 10 * time.Millisecond}) // storage.sync_interval's default
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				// Producers wait rather than shed when a commit stalls on a
				// busy disk: every event is written.
				wo := WorkerOptions{NoSync: sink == "nosync", EnqueueTimeout: time.Minute}
				if w, err = NewWorker(s, wo); err != nil {
					b.Fatal(err)
				}
				sk = w
			}
			ids := make([]string, 1000)
			for i := range ids {
				ids[i] = fmt.Sprintf("bench-%04d", i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			usr0, sys0 := cputime.Process()
			var wg sync.WaitGroup
			var shed atomic.Int64
			per := b.N / producers
			for p := range producers {
				n := per
				if p == 0 {
					n += b.N % producers
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					interval := time.Duration(producers) * time.Second / rate
					next := time.Now()
					for i := range n {
						next = next.Add(interval)
						if d := time.Until(next); d > 0 {
							time.Sleep(d)
						}
						if !sk.Record(pacedEvent(ids[(p*7919+i)%len(ids)], i)) {
							shed.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			if w != nil {
				w.Close()
			}
			elapsed := time.Since(start)
			usr1, sys1 := cputime.Process()
			b.ReportMetric(float64((usr1+sys1-usr0-sys0).Nanoseconds())/1e3/float64(b.N), "cpu-µs/event")
			b.ReportMetric(float64((sys1-sys0).Nanoseconds())/1e3/float64(b.N), "sys-µs/event")
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			b.StopTimer()
			if shed.Load() > 0 {
				b.Fatalf("%d of %d events shed", shed.Load(), b.N)
			}
		})
	}
}

// pacedEvent is a request (even i) or response event shaped like the
// gateway's for a small JSON-RPC exchange.
func pacedEvent(session string, i int) *event.Event {
	e := &event.Event{Session: session, Time: time.Now(), Route: "mcp", RequestID: "4f1c2a9e0b7d3c51-000000000001a2b3",
		Method: "POST", Path: "/mcp"}
	if i%2 == 0 {
		e.Type = event.Request
		e.Headers = []event.Header{{Name: "Host", Value: "127.0.0.1:8080"}, {Name: "User-Agent", Value: "Go-http-client/1.1"},
			{Name: "Mcp-Session-Id", Value: session}, {Name: "Accept-Encoding", Value: "gzip"},
			{Name: "Content-Type", Value: "application/json"}, {Name: "Content-Length", Value: "46"},
			{Name: "X-Forwarded-For", Value: "127.0.0.1"}, {Name: "X-Forwarded-Proto", Value: "http"},
			{Name: "X-Request-Id", Value: "4f1c2a9e0b7d3c51-000000000001a2b3"}, {Name: "Via", Value: "1.1 wasmgate"}}
		e.Body = []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
		e.BodyBytes = int64(len(e.Body))
		return e
	}
	e.Type = event.Response
	e.Status, e.Latency = 200, 180*time.Microsecond
	e.Headers = []event.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "Content-Length", Value: "46"},
		{Name: "Date", Value: "Fri, 27 Nov 2026 02:51:30 GMT"}, {Name: "Via", Value: "1.1 wasmgate"},
		{Name: "X-Request-Id", Value: "4f1c2a9e0b7d3c51-000000000001a2b3"}}
	e.BodyBytes = 46
	return e
}

// BenchmarkCommitBatch measures the writer's CPU per batch on one
// goroutine, without the worker's queue and without log syncs: a batch is
// 25 exchanges (a request and its response, one run each) of 25 of 1,000
// sessions, as BenchmarkGatewayRecording's batches are. It covers
// numbering, encoding, grouping into runs, the metadata records and
// Pebble's commit (log write, memtable insert and the memtable flushes
// that follow), so cpu-ns/event is the worker's cost per event apart from
// scheduling and syncs.
func BenchmarkCommitBatch(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-%d", i)
	}
	evs := make([]*event.Event, 50)
	for i := range evs {
		evs[i] = pacedEvent("", i)
	}
	var sc writeScratch
	c := dbCommitter{s.db}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cputime.Total()
	for n := range b.N {
		for i, e := range evs {
			// Sessions in a batch interleave, as they arrive.
			e.Session, e.Seq = ids[(n*25+i/2)%len(ids)], 0
		}
		if _, err := s.commitEvents(evs, c, pebble.NoSync, &sc, false); err != nil {
			b.Fatal(err)
		}
	}
	// Process CPU (Pebble's flushes included), not wall time: on a shared
	// box the wall clock mostly measures the neighbours.
	b.ReportMetric(float64((cputime.Total()-cpu0).Nanoseconds())/float64(b.N*len(evs)), "cpu-ns/event")
}

// BenchmarkPebbleFloor measures what Pebble alone costs per recorded
// exchange under the fixed write contract, with none of the
// recorder's own work: one session/seq key per exchange (a request and its
// response as one 290-byte run, BenchmarkGatewayRecording's shape), 25 keys
// (50 events) per batch over 1,000 sessions, every batch synced. As the
// worker does, one goroutine applies batches in key order and a second one
// waits for their syncs, up to 64 batches behind, with
// storage.sync_interval's 10ms default, so that batches share syncs
// (sync=grouped); sync=none applies the same batches without a sync.
// cpu-µs/exchange is process CPU, memtable flushes and compactions
// included. Set against BenchmarkGatewayRecording's cpu-µs/req-off, it
// bounds the on/off ratio that any recorder built on this contract can
// reach on this machine: off / (off + floor).
func BenchmarkPebbleFloor(b *testing.B) {
	for _, grouped := range []bool{false, true} {
		name := "sync=none"
		if grouped {
			name = "sync=grouped"
		}
		b.Run(name, func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{MinSyncInterval: 10 * time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			value := bytes.Repeat([]byte("Content-Type: application/json\r\n"), 10)[:290]
			ids := make([]string, 1000)
			for i := range ids {
				ids[i] = fmt.Sprintf("bench-%d", i)
			}
			seqs := make([]uint64, len(ids))
			keys := make([][]byte, 25)
			applied := make(chan *pebble.Batch, 64)
			synced := make(chan error, 1)
			go func() {
				var first error
				for batch := range applied {
					if err := batch.SyncWait(); err != nil && first == nil {
						first = err
					}
					batch.Close()
				}
				synced <- first
			}()
			b.ResetTimer()
			usr0, sys0 := cputime.Process()
			for n := range b.N {
				for i := range keys {
					j := (n*25 + i*7919) % len(ids)
					keys[i] = eventKey(keys[i][:0], ids[j], seqs[j])
					seqs[j] += 2
				}
				slices.SortFunc(keys, bytes.Compare)
				batch := s.db.NewBatch()
				for _, k := range keys {
					if err := batch.Set(k, value, nil); err != nil {
						b.Fatal(err)
					}
				}
				if !grouped {
					if err := batch.Commit(pebble.NoSync); err != nil {
						b.Fatal(err)
					}
					batch.Close()
					continue
				}
				if err := s.db.ApplyNoSyncWait(batch, pebble.Sync); err != nil {
					b.Fatal(err)
				}
				applied <- batch
			}
			close(applied)
			if err := <-synced; err != nil {
				b.Fatal(err)
			}
			usr1, sys1 := cputime.Process()
			b.ReportMetric(float64((usr1+sys1-usr0-sys0).Nanoseconds())/1e3/float64(b.N*25), "cpu-µs/exchange")
			b.ReportMetric(float64((sys1-sys0).Nanoseconds())/1e3/float64(b.N*25), "sys-µs/exchange")
		})
	}
}
