package wasmhost

import (
	"sync"

	"github.com/wasmgate/wasmgate/gateway/config"
)

// sharedRegistry holds shared data and shared queues, scoped by vm_id. A
// plugin's vm_id is its name, so every VM of its pool and every version
// across reloads share one store.
type sharedRegistry struct {
	h      *Host
	mu     sync.Mutex
	stores map[string]*sharedStore
	queues map[uint32]*sharedQueue
	nextQ  uint32
	cas    uint32
}

type sharedEntry struct {
	value []byte
	cas   uint32
}

type sharedStore struct {
	data   map[string]*sharedEntry
	bytes  int
	queues map[string]*sharedQueue
}

type subscriber struct {
	vm   *vm
	root *rootCtx
}

type sharedQueue struct {
	id       uint32
	vmID     string
	maxItems int // limits.queue_items of the plugin that registered it last
	items    [][]byte
	subs     []subscriber
	next     int
	notify   bool // a proxy_on_queue_ready dispatch is pending
	seq      uint64
	dropped  uint64
}

func newSharedRegistry(h *Host) *sharedRegistry {
	return &sharedRegistry{h: h, stores: map[string]*sharedStore{}, queues: map[uint32]*sharedQueue{}}
}

func (r *sharedRegistry) store(vmID string) *sharedStore {
	s := r.stores[vmID]
	if s == nil {
		s = &sharedStore{data: map[string]*sharedEntry{}, queues: map[string]*sharedQueue{}}
		r.stores[vmID] = s
	}
	return s
}

// usage reports the bytes and keys of shared data and the queued items of
// vmID.
func (r *sharedRegistry) usage(vmID string) (bytes, keys, items int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stores[vmID]
	if s == nil {
		return 0, 0, 0
	}
	for _, q := range s.queues {
		items += len(q.items)
	}
	return s.bytes, len(s.data), items
}

func (r *sharedRegistry) get(vmID, key string) ([]byte, uint32, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.store(vmID).data[key]
	if e == nil {
		return nil, 0, false
	}
	return e.value, e.cas, true
}

// set stores value under key; a non-zero cas must match the entry's. A
// refusal by a limit names it.
func (r *sharedRegistry) set(vmID, key string, value []byte, cas uint32, lim *config.PluginLimits) (uint32, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.store(vmID)
	e := s.data[key]
	if e != nil && cas != 0 && cas != e.cas {
		return statusCASMismatch, ""
	}
	grow := len(key) + len(value)
	if e != nil {
		grow = len(value) - len(e.value)
	} else if len(s.data) >= lim.SharedDataKeys {
		return statusInternalFailure, limitSharedDataKeys
	}
	if s.bytes+grow > lim.SharedDataBytes.N() {
		return statusInternalFailure, limitSharedDataBytes
	}
	if e == nil {
		e = &sharedEntry{}
		s.data[key] = e
	}
	s.bytes += grow
	e.value = append([]byte(nil), value...)
	r.cas++
	if r.cas == 0 {
		r.cas = 1
	}
	e.cas = r.cas
	return statusOK, ""
}

// register opens (creating if needed) the named queue of vmID and
// subscribes the calling root context to proxy_on_queue_ready.
func (r *sharedRegistry) register(vmID, name string, m *vm, root *rootCtx, maxItems int) (uint32, uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.store(vmID)
	q := s.queues[name]
	if q == nil {
		if len(s.queues) >= maxQueues {
			return 0, statusInternalFailure
		}
		r.nextQ++
		q = &sharedQueue{id: r.nextQ, vmID: vmID}
		s.queues[name] = q
		r.queues[q.id] = q
	}
	q.maxItems = maxItems
	for _, sub := range q.subs {
		if sub.vm == m && sub.root == root {
			return q.id, statusOK
		}
	}
	q.subs = append(q.subs, subscriber{vm: m, root: root})
	return q.id, statusOK
}

func (r *sharedRegistry) resolve(vmID, name string) (uint32, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stores[vmID]
	if s == nil || s.queues[name] == nil {
		return 0, false
	}
	return s.queues[name].id, true
}

// enqueue adds value to queue id; full reports a refusal by
// limits.queue_items.
func (r *sharedRegistry) enqueue(id uint32, value []byte) (st uint32, full bool) {
	r.mu.Lock()
	q := r.queues[id]
	if q == nil {
		r.mu.Unlock()
		return statusNotFound, false
	}
	if len(q.items) >= q.maxItems {
		q.dropped++
		r.mu.Unlock()
		return statusInternalFailure, true
	}
	q.items = append(q.items, append([]byte(nil), value...))
	q.seq++
	var sub subscriber
	dispatch := false
	if !q.notify && len(q.subs) > 0 {
		q.next = (q.next + 1) % len(q.subs)
		sub = q.subs[q.next]
		q.notify = true
		dispatch = true
	}
	r.mu.Unlock()
	if dispatch {
		// Another VM's lock may be needed: never call into it from here.
		if !r.h.goBG(func() { r.deliver(q, sub) }) {
			r.mu.Lock()
			q.notify = false
			r.mu.Unlock()
		}
	}
	return statusOK, false
}

// deliver calls proxy_on_queue_ready on one subscriber. Items enqueued
// while it runs trigger one more delivery, not one per item.
func (r *sharedRegistry) deliver(q *sharedQueue, sub subscriber) {
	for {
		r.mu.Lock()
		seq := q.seq
		r.mu.Unlock()
		m := sub.vm
		m.runBackground(cbQueueReady, func() {
			f := m.fns[cbQueueReady]
			if f == nil {
				return
			}
			m.setEffRoot(sub.root)
			if _, err := m.call(cbQueueReady, f, uint64(sub.root.id), uint64(q.id)); err != nil {
				m.ver.poison(m, err.Error())
			}
		})
		r.mu.Lock()
		if q.seq == seq || len(q.items) == 0 || len(q.subs) == 0 || r.h.closed.Load() {
			q.notify = false
			r.mu.Unlock()
			return
		}
		q.next = (q.next + 1) % len(q.subs)
		sub = q.subs[q.next]
		r.mu.Unlock()
	}
}

func (r *sharedRegistry) dequeue(id uint32) ([]byte, uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.queues[id]
	if q == nil {
		return nil, statusNotFound
	}
	if len(q.items) == 0 {
		return nil, statusEmpty
	}
	v := q.items[0]
	q.items[0] = nil
	q.items = q.items[1:]
	return v, statusOK
}

// dropVM removes a closed VM's queue subscriptions.
func (r *sharedRegistry) dropVM(m *vm) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, q := range r.queues {
		out := q.subs[:0]
		for _, s := range q.subs {
			if s.vm != m {
				out = append(out, s)
			}
		}
		for i := len(out); i < len(q.subs); i++ {
			q.subs[i] = subscriber{}
		}
		q.subs = out
		if q.next >= len(q.subs) {
			q.next = 0
		}
	}
}

func (m *vm) vmID() string { return m.ver.s.name }

func hSetSharedData(m *vm, s []uint64) uint32 {
	key, ok1 := m.readString(s[0], s[1])
	val, ok2 := m.read(s[2], s[3])
	if !ok1 || !ok2 {
		return statusInvalidMemoryAccess
	}
	st, limit := m.ver.s.h.shared.set(m.vmID(), key, val, uint32(s[4]), &m.ver.s.cfg.Limits)
	if limit != "" {
		return m.refuse(limit, st, "key", key)
	}
	return st
}

func hGetSharedData(m *vm, s []uint64) uint32 {
	key, ok := m.readString(s[0], s[1])
	if !ok {
		return statusInvalidMemoryAccess
	}
	val, cas, found := m.ver.s.h.shared.get(m.vmID(), key)
	if !found {
		return statusNotFound
	}
	if !m.putU32(s[4], cas) {
		return statusInvalidMemoryAccess
	}
	return m.out(val, s[2], s[3])
}

func hRegisterQueue(m *vm, s []uint64) uint32 {
	name, ok := m.readString(s[0], s[1])
	if !ok {
		return statusInvalidMemoryAccess
	}
	if m.effRoot == nil {
		return statusBadArgument
	}
	id, st := m.ver.s.h.shared.register(m.vmID(), name, m, m.effRoot, m.ver.s.cfg.Limits.QueueItems)
	if st != statusOK {
		return st
	}
	if !m.putU32(s[2], id) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

func hResolveQueue(m *vm, s []uint64) uint32 {
	vmID, ok1 := m.readString(s[0], s[1])
	name, ok2 := m.readString(s[2], s[3])
	if !ok1 || !ok2 {
		return statusInvalidMemoryAccess
	}
	if vmID == "" {
		vmID = m.vmID()
	}
	id, found := m.ver.s.h.shared.resolve(vmID, name)
	if !found {
		return statusNotFound
	}
	if !m.putU32(s[4], id) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

func hEnqueue(m *vm, s []uint64) uint32 {
	val, ok := m.read(s[1], s[2])
	if !ok {
		return statusInvalidMemoryAccess
	}
	st, full := m.ver.s.h.shared.enqueue(uint32(s[0]), val)
	if full {
		return m.refuse(limitQueueItems, st, "queue", uint32(s[0]))
	}
	return st
}

func hDequeue(m *vm, s []uint64) uint32 {
	val, st := m.ver.s.h.shared.dequeue(uint32(s[0]))
	if st != statusOK {
		return st
	}
	return m.out(val, s[1], s[2])
}
