package upstream

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/wasmgate/wasmgate/gateway/config"
)

// Update is the outcome of Pools.Update: which upstreams changed, and the
// replaced pools that still serve the requests holding them.
type Update struct {
	Added, Changed, Removed []string
	retired                 []*Upstream
}

// Empty reports whether the update changed nothing.
func (u *Update) Empty() bool { return len(u.Added)+len(u.Changed)+len(u.Removed) == 0 }

// Update applies a new upstream list (a configuration reload). An upstream
// whose configuration is unchanged keeps its pools and connections; a new
// or changed one gets new pools at once (Get and Do return them). Replaced
// and removed pools are not cut: requests already holding them finish, and
// CloseRetired closes them afterwards. On error nothing changes.
func (p *Pools) Update(cfgs []config.Upstream) (*Update, error) {
	if p.closed.Load() {
		return nil, fmt.Errorf("upstream pools are closed")
	}
	if err := checkUpstreams(cfgs); err != nil {
		return nil, err
	}
	old := *p.byName.Load()
	next := make(map[string]*Upstream, len(cfgs))
	res := &Update{}
	for _, c := range cfgs {
		cur, ok := old[c.Name]
		if ok && reflect.DeepEqual(cur.cfg, c) {
			next[c.Name] = cur
			continue
		}
		if ok {
			// The new pools' gauges take the same labels.
			cur.unregister()
			res.Changed = append(res.Changed, c.Name)
			res.retired = append(res.retired, cur)
		} else {
			res.Added = append(res.Added, c.Name)
		}
		next[c.Name] = p.start(c)
	}
	for name, u := range old {
		if _, kept := next[name]; !kept {
			u.unregister()
			res.Removed = append(res.Removed, name)
			res.retired = append(res.retired, u)
		}
	}
	p.mu.Lock()
	for _, u := range res.retired {
		p.retired[u] = struct{}{}
	}
	p.mu.Unlock()
	p.byName.Store(&next)
	if !res.Empty() {
		p.log.Info("upstreams updated", "added", res.Added, "changed", res.Changed, "removed", res.Removed)
	}
	return res, nil
}

// CloseRetired closes the pools an Update replaced, each once no request
// holds one of its connections. Call it after the routes that used them
// stopped taking requests; it returns early with ctx (Close then closes
// what is left).
func (p *Pools) CloseRetired(ctx context.Context, upd *Update) error {
	for _, u := range upd.retired {
		for u.busy() {
			t := time.NewTimer(10 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("drain upstream %q: %w", u.Name, ctx.Err())
			case <-t.C:
			}
		}
		u.stop()
		u.closeIdle()
		p.mu.Lock()
		delete(p.retired, u)
		p.mu.Unlock()
		u.log.Info("replaced upstream pools drained and closed")
	}
	return nil
}

// busy reports whether a request still holds a connection of u.
func (u *Upstream) busy() bool {
	for _, t := range u.targets {
		if t.inFlight.Load() > 0 || t.streams.Load() > 0 {
			return true
		}
	}
	return false
}

func (u *Upstream) unregister() {
	if u.m.reg == nil {
		return
	}
	for _, t := range u.targets {
		for _, g := range t.gauges {
			u.m.reg.Unregister(g)
		}
		t.gauges = nil
	}
}
