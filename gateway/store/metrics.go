package store

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

type workerMetrics struct {
	batchSize     prometheus.Histogram
	commitLatency prometheus.Histogram
	written       prometheus.Counter
	failures      prometheus.Counter
	retries       prometheus.Counter
	exhausted     prometheus.Counter
	shed          *prometheus.CounterVec
	enqueueWaits  prometheus.Counter
	coalesced     prometheus.Counter
	ratio         prometheus.Gauge

	mu            sync.Mutex
	logical, keys float64
}

func newWorkerMetrics(reg prometheus.Registerer) (*workerMetrics, error) {
	m := &workerMetrics{
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wasmgate_store_batch_events",
			Help:    "Events per committed Pebble batch.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000},
		}),
		commitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wasmgate_store_commit_seconds",
			Help:    "Time to commit (and sync) one batch.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmgate_store_events_written_total",
			Help: "Session events committed to the store.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmgate_store_commit_failures_total",
			Help: "Batches whose commit failed.",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmgate_store_retries_total",
			Help: "Events scheduled for another commit attempt after a failed batch.",
		}),
		exhausted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmgate_store_exhausted_total",
			Help: "Events given up after storage.max_attempts failed commits (logged).",
		}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_store_shed_total",
			Help: "Events refused by Record: full (queue full past enqueue_timeout), closed, invalid (no usable session id).",
		}, []string{"reason"}),
		enqueueWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmgate_store_enqueue_waits_total",
			Help: "Record calls that found the queue full and waited.",
		}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmgate_store_events_coalesced_total",
			Help: "Events dropped within a batch as duplicates (same SSE id on the same session stream).",
		}),
		ratio: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wasmgate_store_coalesce_ratio",
			Help: "Fraction of logical writes (event, session touch, SSE id index) saved by coalescing, since start.",
		}),
	}
	for _, l := range []string{"full", "closed", "invalid"} {
		m.shed.WithLabelValues(l)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.batchSize, m.commitLatency, m.written, m.failures,
			m.retries, m.exhausted, m.shed, m.enqueueWaits, m.coalesced, m.ratio} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register store worker metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *workerMetrics) registerGauges(reg prometheus.Registerer, depth, retryDepth, held func() float64) error {
	for _, g := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wasmgate_store_queue_depth",
			Help: "Session events waiting in the recorder queue (bounded by storage.queue_size).",
		}, depth),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wasmgate_store_retry_depth",
			Help: "Session events waiting for another commit attempt (with the events held, in a batch or awaiting their sync, within storage.queue_size).",
		}, retryDepth),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wasmgate_store_held_events",
			Help: "Session events held by storage.exchange_window until their request's response is recorded (within storage.queue_size).",
		}, held),
	} {
		if err := reg.Register(g); err != nil {
			return fmt.Errorf("register store worker metrics: %w", err)
		}
	}
	return nil
}

// coalesce accounts one committed batch: logical writes it stood for and
// keys it actually wrote.
func (m *workerMetrics) coalesce(dups, logical, keys int) {
	m.coalesced.Add(float64(dups))
	m.mu.Lock()
	m.logical += float64(logical)
	m.keys += float64(keys)
	r := 1 - m.keys/m.logical
	m.mu.Unlock()
	m.ratio.Set(r)
}
