package wasmhost

import (
	"context"
	"sync"
	"time"

	"github.com/wasmgate/wasmgate/gateway/config"
)

// watchdog enforces cpu_limit for every VM from one goroutine: each VM
// publishes the deadline of its call in progress, and the watchdog closes
// the module of any call past it. wazero (with WithCloseOnContextDone)
// checks for a closed module at function entries and loop back-edges, so
// the guest stops within about one scan period, and no goroutine or timer
// is created per call.
type watchdog struct {
	enabled bool
	period  time.Duration

	mu  sync.Mutex
	vms map[*vm]struct{}
}

func newWatchdog(plugins []config.Plugin) *watchdog {
	period := 10 * time.Millisecond
	for _, p := range plugins {
		if d := p.CPULimit.D() / 4; d > 0 && d < period {
			period = d
		}
	}
	period = max(period, time.Millisecond)
	return &watchdog{enabled: true, period: period, vms: map[*vm]struct{}{}}
}

func (w *watchdog) add(m *vm) {
	w.mu.Lock()
	w.vms[m] = struct{}{}
	w.mu.Unlock()
}

func (w *watchdog) remove(m *vm) {
	w.mu.Lock()
	delete(w.vms, m)
	w.mu.Unlock()
}

func (w *watchdog) run(ctx context.Context) {
	t := time.NewTicker(w.period)
	defer t.Stop()
	var overdue []*vm
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			ns := now.UnixNano()
			overdue = overdue[:0]
			w.mu.Lock()
			for m := range w.vms {
				if d := m.deadline.Load(); d != 0 && ns > d {
					overdue = append(overdue, m)
				}
			}
			w.mu.Unlock()
			for _, m := range overdue {
				if d := m.deadline.Load(); d != 0 && ns > d {
					m.timedOut.Store(true)
					_ = m.mod.CloseWithExitCode(context.Background(), exitCodeCPULimit)
				}
			}
		}
	}
}
