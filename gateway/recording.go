package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/event"
	"github.com/wasmgate/wasmgate/gateway/store"
)

// retentionInterval is how often retention (storage.retention) and the size
// cap (storage.max_bytes) are applied; the first pass runs at start.
const retentionInterval = time.Minute

// newRecorder opens the session store at storage.path and starts its
// batching worker and retention loop, and registers the admin session
// endpoints. With storage.enabled false every event is discarded.
func newRecorder(cfg *config.Config, g *Gateway) (event.Sink, event.Replayer, io.Closer, error) {
	st := cfg.Storage
	if !st.Enabled {
		return event.Discard, nil, nil, nil
	}
	log := g.log.With("component", "store")
	// The pool is the process's, shared by every producer: set before the
	// first event is taken from it.
	event.SetPoolLimit(st.EventPool)
	if err := registerEventPool(g.reg); err != nil {
		return nil, nil, nil, err
	}
	start := time.Now()
	s, err := store.Open(st.Path, store.Options{MinSyncInterval: time.Duration(st.SyncInterval), Logger: log, Registerer: g.reg})
	if err != nil {
		return nil, nil, nil, err
	}
	wo := store.WorkerOptionsFrom(st, cfg.Sessions)
	wo.Logger, wo.Registerer = log, g.reg
	w, err := store.NewWorker(s, wo)
	if err != nil {
		s.Close()
		return nil, nil, nil, err
	}
	log.Info("session store open", "path", st.Path, "took", time.Since(start).Round(time.Millisecond),
		"sync", st.Sync, "retention", st.Retention.D(), "max_bytes", int64(st.MaxBytes))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.RunRetention(ctx, retentionInterval, st.Retention.D(), int64(st.MaxBytes))
	}()
	store.RegisterAdmin(g.Admin(), s, log)
	return w, s, &recorder{w: w, s: s, cancel: cancel, done: done}, nil
}

// registerEventPool exposes the statistics of the session event pool
// (storage.event_pool). They are the process's: two gateways in one
// process report the same figures.
func registerEventPool(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wasmgate_event_pool_free",
			Help: "Released session events kept for reuse (at most storage.event_pool).",
		}, func() float64 { return float64(event.ReadPoolStats().Free) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "wasmgate_event_pool_allocated_total",
			Help: "Session events allocated because the pool had none free.",
		}, func() float64 { return float64(event.ReadPoolStats().Allocated) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "wasmgate_event_pool_discarded_total",
			Help: "Released session events not kept for reuse: the pool was full (storage.event_pool), or the event had grown past 16KiB of captured bytes or 128 header fields.",
		}, func() float64 { return float64(event.ReadPoolStats().Discarded) }),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register event pool metrics: %w", err)
		}
	}
	return nil
}

// recorder closes the worker (flushing everything queued), then the store.
type recorder struct {
	w      *store.Worker
	s      *store.Store
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *recorder) Close() error {
	r.cancel()
	<-r.done
	var errs []error
	if err := r.w.Close(); err != nil {
		errs = append(errs, fmt.Errorf("flush session events: %w", err))
	}
	if err := r.s.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
