package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/gateway/event"
)

// BenchmarkWorker measures events/s through Record → batch → synced Pebble
// commit with the default storage settings (batch 50, queue 10,000, sync),
// ~300-byte events over 10,000 interleaved sessions.
func BenchmarkWorker(b *testing.B) {
	for _, bc := range []struct {
		name   string
		batch  int
		noSync bool
	}{
		{"sync/batch=50", 50, false},
		{"sync/batch=200", 200, false},
		{"nosync/batch=50", 50, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := openTest(b, b.TempDir())
			defer s.Close()
			w, err := NewWorker(s, WorkerOptions{BatchSize: bc.batch, NoSync: bc.noSync, EnqueueTimeout: time.Minute})
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
			b.StopTimer()
		})
	}
}
