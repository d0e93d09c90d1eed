package upstream

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	reg    prometheus.Registerer
	errors *prometheus.CounterVec
	waits  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reg: reg,
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_upstream_errors_total",
			Help: "Upstream request failures by target and kind (refused, reset, timeout, pool_full, no_target, other).",
		}, []string{"upstream", "target", "kind"}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_upstream_conn_waits_total",
			Help: "Requests that found the target's pool full and had to wait for a connection.",
		}, []string{"upstream", "target", "pool"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.errors, m.waits} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register upstream metrics: %w", err)
			}
		}
	}
	return m, nil
}

// register adds t's counters and the gauges read from its pools.
func (m *metrics) register(u *Upstream, t *Target) {
	for k := range t.errs {
		t.errs[k] = m.errors.WithLabelValues(u.Name, t.Addr, kindNames[k])
	}
	t.waits = m.waits.WithLabelValues(u.Name, t.Addr, "default")
	t.streamWaits = m.waits.WithLabelValues(u.Name, t.Addr, "stream")
	if m.reg == nil {
		return
	}
	labels := prometheus.Labels{"upstream": u.Name, "target": t.Addr}
	gauge := func(name, help string, f func() float64) {
		// A duplicate target within one registry is a config error caught
		// by validation; ignore the registration error here.
		g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f)
		if m.reg.Register(g) == nil {
			t.gauges = append(t.gauges, g)
		}
	}
	gauge("wasmgate_upstream_conns_in_use", "Requests holding a connection of the target's ordinary pool.",
		func() float64 { return float64(t.inFlight.Load()) })
	gauge("wasmgate_upstream_conns_idle", "Idle keep-alive connections in the target's ordinary pool.",
		func() float64 { return float64(max(0, int64(t.hc.ConnsCount())-t.inFlight.Load())) })
	gauge("wasmgate_upstream_streams_in_use", "Long-lived responses (SSE) holding a connection of the target's stream pool.",
		func() float64 { return float64(t.streams.Load()) })
	gauge("wasmgate_upstream_streams_idle", "Idle connections in the target's stream pool.",
		func() float64 { return float64(max(0, int64(t.stream.ConnsCount())-t.streams.Load())) })
	gauge("wasmgate_upstream_target_healthy", "1 when the target takes requests, 0 when ejected or failing health checks.",
		func() float64 {
			if t.Healthy() {
				return 1
			}
			return 0
		})
}
