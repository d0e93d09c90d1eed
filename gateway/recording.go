package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

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
