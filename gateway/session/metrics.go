package session

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	active         prometheus.Gauge
	started        prometheus.Counter
	ended          *prometheus.CounterVec
	endedIdle      prometheus.Counter
	endedDeleted   prometheus.Counter
	endedShutdown  prometheus.Counter
	rejectedFull   prometheus.Counter
	streamsEvicted prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		active: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wasmgate_sessions_active",
			Help: "Sessions in the session table.",
		})),
		started: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmgate_sessions_started_total",
			Help: "Sessions started.",
		})),
		ended: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_sessions_ended_total",
			Help: "Sessions ended, by reason (idle, deleted, shutdown).",
		}, []string{"reason"})),
		rejectedFull: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmgate_sessions_rejected_full_total",
			Help: "New sessions refused because the table held sessions.max_sessions.",
		})),
		streamsEvicted: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmgate_sessions_tracked_streams_evicted_total",
			Help: "Tracked SSE streams forgotten because a session passed sse.tracked_streams.",
		})),
	}
	m.endedIdle = m.ended.WithLabelValues(ReasonIdle)
	m.endedDeleted = m.ended.WithLabelValues(ReasonDeleted)
	m.endedShutdown = m.ended.WithLabelValues(ReasonShutdown)
	return m
}

func (m *metrics) endedBy(reason string) prometheus.Counter {
	switch reason {
	case ReasonIdle:
		return m.endedIdle
	case ReasonDeleted:
		return m.endedDeleted
	case ReasonShutdown:
		return m.endedShutdown
	}
	return m.ended.WithLabelValues(reason)
}

// register registers c on reg, or returns the collector already registered
// under the same description (a second table on one registry shares the
// series rather than failing).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // a name clash with a different metric type is a programming error
	}
	return c
}
