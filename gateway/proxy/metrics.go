package proxy

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	rejected *prometheus.CounterVec
	// inFlight is read by a GaugeFunc: an integer add per request instead
	// of a Gauge's compare-and-swap loop on float bits.
	inFlight  atomic.Int64
	sseOpen   prometheus.Gauge
	sseEvents *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_requests_total",
			Help: "Proxied requests by route and response status.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wasmgate_request_duration_seconds",
			Help:    "Time from request received to response headers ready, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_requests_rejected_total",
			Help: "Requests refused before routing (malformed, too large, no route), by status.",
		}, []string{"code"}),
		sseOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wasmgate_sse_streams_open",
			Help: "SSE streams being relayed to clients.",
		}),
		sseEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_sse_events_total",
			Help: "SSE events by outcome: relayed, dropped (by a plugin), heartbeat, replayed.",
		}, []string{"route", "outcome"}),
	}
	inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wasmgate_requests_in_flight",
		Help: "Requests being handled (a streamed response counts until its headers are out).",
	}, func() float64 { return float64(m.inFlight.Load()) })
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.latency, m.rejected, inFlight, m.sseOpen, m.sseEvents} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register proxy metrics: %w", err)
			}
		}
	}
	return m, nil
}

// routeMetrics caches a route's children so the hot path does no label
// lookups.
type routeMetrics struct {
	name    string
	m       *metrics
	latency prometheus.Observer
	codes   [600]atomic.Pointer[prometheus.Counter]
	mu      sync.Mutex

	sseRelayed, sseDropped, sseHeartbeat, sseReplayed prometheus.Counter
}

func (m *metrics) route(name string) *routeMetrics {
	return &routeMetrics{
		name: name, m: m,
		latency:      m.latency.WithLabelValues(name),
		sseRelayed:   m.sseEvents.WithLabelValues(name, "relayed"),
		sseDropped:   m.sseEvents.WithLabelValues(name, "dropped"),
		sseHeartbeat: m.sseEvents.WithLabelValues(name, "heartbeat"),
		sseReplayed:  m.sseEvents.WithLabelValues(name, "replayed"),
	}
}

func (r *routeMetrics) observe(code int, d time.Duration) {
	r.latency.Observe(d.Seconds())
	if code < 0 || code >= len(r.codes) {
		code = 0
	}
	c := r.codes[code].Load()
	if c == nil {
		r.mu.Lock()
		if c = r.codes[code].Load(); c == nil {
			v := r.m.requests.WithLabelValues(r.name, itoa(code))
			c = &v
			r.codes[code].Store(c)
		}
		r.mu.Unlock()
	}
	(*c).Inc()
}
