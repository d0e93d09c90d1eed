package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
)

// Update is a staged change of the plugin set, made by a configuration
// reload. Prepare starts what is new or changed off the request path;
// Build makes route chains against the staged set; Commit publishes it
// (Status, Reload and Build see it); CloseReplaced closes the replaced and
// removed plugins once no request can reach them any more. Abort discards
// an update that was not committed.
//
// A changed plugin (any key of its configuration: file, config, pool size,
// limits, ...) becomes a new slot with its own pool, because chains hold
// slots and requests in flight read their slot's limits: the old slot keeps
// serving the routes that still hold it until they drain.
type Update struct {
	h     *Host
	slots map[string]*slot
	order []string
	fresh []*slot // started by this update
	old   []*slot // replaced or removed by it
	done  bool

	Added, Changed, Removed []string
}

// Empty reports whether the update changes no plugin.
func (u *Update) Empty() bool { return len(u.Added)+len(u.Changed)+len(u.Removed) == 0 }

func (h *Host) snapshot() (map[string]*slot, []string) {
	h.slotsMu.RLock()
	defer h.slotsMu.RUnlock()
	return h.slots, h.order
}

// Prepare compiles, starts and configures every plugin of plugins that is
// new or whose configuration changed; unchanged plugins keep their slot,
// their VMs and their version. On error (which names the plugin) nothing
// changed and nothing is left running.
func (h *Host) Prepare(ctx context.Context, plugins []config.Plugin) (*Update, error) {
	if h.closed.Load() {
		return nil, errors.New("plugin host is closed")
	}
	cur, _ := h.snapshot()
	u := &Update{h: h, slots: make(map[string]*slot, len(plugins))}
	for _, p := range plugins {
		if _, dup := u.slots[p.Name]; dup {
			u.Abort(ctx)
			return nil, fmt.Errorf("plugin %q defined twice", p.Name)
		}
		cand := newSlot(h, p)
		s, ok := cur[p.Name]
		if ok && reflect.DeepEqual(s.cfg, cand.cfg) {
			u.slots[p.Name] = s
			u.order = append(u.order, p.Name)
			continue
		}
		if err := cand.loadInitial(ctx); err != nil {
			u.Abort(ctx)
			return nil, err
		}
		u.fresh = append(u.fresh, cand)
		u.slots[p.Name] = cand
		u.order = append(u.order, p.Name)
		if ok {
			u.Changed = append(u.Changed, p.Name)
			u.old = append(u.old, s)
		} else {
			u.Added = append(u.Added, p.Name)
		}
	}
	for name, s := range cur {
		if _, kept := u.slots[name]; !kept {
			u.Removed = append(u.Removed, name)
			u.old = append(u.old, s)
		}
	}
	sort.Strings(u.Removed)
	return u, nil
}

// Build is Host.Build against the staged plugin set.
func (u *Update) Build(route string, refs []config.PluginRef) (chain.Chain, error) {
	return u.h.build(u.slots, route, refs)
}

// Commit publishes the staged plugin set. Chains built before keep the
// slots they hold; the replaced slots keep serving them until
// CloseReplaced.
func (u *Update) Commit() {
	h := u.h
	h.slotsMu.Lock()
	h.slots, h.order = u.slots, u.order
	if h.draining == nil {
		h.draining = map[*slot]struct{}{}
	}
	for _, s := range u.old {
		h.draining[s] = struct{}{}
	}
	h.slotsMu.Unlock()
	u.done = true
	if !u.Empty() {
		h.log.Info("plugins updated", "added", u.Added, "changed", u.Changed, "removed", u.Removed)
	}
}

// Abort closes what Prepare started; it does nothing after Commit.
func (u *Update) Abort(ctx context.Context) {
	if u.done {
		return
	}
	u.done = true
	for _, s := range u.fresh {
		s.close(ctx)
		s.closeRuntimes(ctx)
	}
}

// CloseReplaced closes the slots the committed update replaced or removed.
// Call it when no request can start on them any more (the route table that
// held their chains drained).
func (u *Update) CloseReplaced(ctx context.Context) {
	h := u.h
	for _, s := range u.old {
		h.slotsMu.Lock()
		_, open := h.draining[s]
		delete(h.draining, s)
		h.slotsMu.Unlock()
		if !open {
			continue // Close got there first
		}
		s.close(ctx)
		s.closeRuntimes(ctx)
		h.log.Info("replaced plugin closed", "plugin", s.name)
	}
}

// CurrentSHA256 is the SHA-256 of the module version the named plugin
// serves now; ok is false for an unknown plugin.
func (h *Host) CurrentSHA256(name string) (string, bool) {
	slots, _ := h.snapshot()
	s, ok := slots[name]
	if !ok {
		return "", false
	}
	v := s.cur.Load()
	if v == nil {
		return "", true
	}
	return v.sha, true
}
