package wasmhost

import (
	"errors"
	"math"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// hostMetrics are the host's own metrics, labelled by plugin, plus a
// collector for what plugins define with proxy_define_metric.
type hostMetrics struct {
	reg             prometheus.Registerer
	h               *Host
	calls           *prometheus.CounterVec
	errors          *prometheus.CounterVec
	traps           *prometheus.CounterVec
	timeouts        *prometheus.CounterVec
	ooms            *prometheus.CounterVec
	callSeconds     *prometheus.HistogramVec
	queueWait       *prometheus.HistogramVec
	vms             *prometheus.GaugeVec
	replacements    *prometheus.CounterVec
	recycled        *prometheus.CounterVec
	reloads         *prometheus.CounterVec
	reloadSeconds   *prometheus.HistogramVec
	logDropped      *prometheus.CounterVec
	httpCalls       *prometheus.CounterVec
	httpCallSeconds *prometheus.HistogramVec
	cpuUnits        *prometheus.CounterVec
	limitRefusals   *prometheus.CounterVec
	own             []prometheus.Collector // unregistered by Close
}

// pluginMetrics are hostMetrics curried for one plugin, resolved once so
// the call path does no label lookups.
type pluginMetrics struct {
	calls           [numCallbacks]prometheus.Counter
	errors          *prometheus.CounterVec
	traps           prometheus.Counter
	timeouts        prometheus.Counter
	ooms            prometheus.Counter
	callSeconds     prometheus.Observer
	queueWait       prometheus.Observer
	vms             prometheus.Gauge
	replacements    prometheus.Counter
	recycled        prometheus.Counter
	reloads         *prometheus.CounterVec
	reloadSeconds   prometheus.Observer
	logDropped      prometheus.Counter
	httpCalls       *prometheus.CounterVec
	httpCallSeconds prometheus.Observer
	cpuUnits        prometheus.Counter
	limitRefusals   *prometheus.CounterVec
	guest           guestMetrics
}

func registerOrReuse[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

func newHostMetrics(reg prometheus.Registerer, h *Host) (*hostMetrics, error) {
	hm := &hostMetrics{reg: reg, h: h}
	latency := []float64{1e-6, 5e-6, 2e-5, 1e-4, 5e-4, 2e-3, 1e-2, 5e-2, 0.25, 1}
	var err error
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		if err != nil {
			return nil
		}
		var c *prometheus.CounterVec
		c, err = registerOrReuse(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels))
		return c
	}
	hv := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		if err != nil {
			return nil
		}
		var c *prometheus.HistogramVec
		c, err = registerOrReuse(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels))
		return c
	}
	hm.calls = cv("wasmgate_plugin_calls_total", "Wasm callback calls by plugin and callback.", "plugin", "callback")
	hm.errors = cv("wasmgate_plugin_errors_total", "Plugin failures by kind (trap, timeout, oom, capacity, pause_timeout, ...).", "plugin", "kind")
	hm.traps = cv("wasmgate_plugin_traps_total", "Guest traps (the VM is discarded).", "plugin")
	hm.timeouts = cv("wasmgate_plugin_timeouts_total", "Callbacks stopped for exceeding cpu_limit.", "plugin")
	hm.ooms = cv("wasmgate_plugin_oom_total", "Guest failures at the memory limit.", "plugin")
	hm.callSeconds = hv("wasmgate_plugin_call_seconds", "Latency of one Wasm callback.", latency, "plugin")
	hm.queueWait = hv("wasmgate_plugin_queue_wait_seconds", "Time waiting for a busy VM or call slot (calls that found both free are not observed).", latency, "plugin")
	if err == nil {
		hm.vms, err = registerOrReuse(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wasmgate_plugin_vms", Help: "Live VMs (serving or draining)."}, []string{"plugin"}))
	}
	hm.replacements = cv("wasmgate_plugin_vm_replacements_total", "VMs discarded after a trap, timeout or OOM.", "plugin")
	hm.recycled = cv("wasmgate_plugin_vm_recycled_total", "VMs drained for passing recycle_memory.", "plugin")
	hm.reloads = cv("wasmgate_plugin_reloads_total", "Plugin reloads by result.", "plugin", "result")
	hm.reloadSeconds = hv("wasmgate_plugin_reload_seconds", "Time to compile, start and swap a new plugin version.", []float64{0.005, 0.02, 0.05, 0.1, 0.25, 1, 5}, "plugin")
	hm.logDropped = cv("wasmgate_plugin_log_dropped_total", "Guest log lines dropped by the rate limit.", "plugin")
	hm.httpCalls = cv("wasmgate_plugin_http_calls_total", "proxy_http_call results by status class.", "plugin", "result")
	hm.httpCallSeconds = hv("wasmgate_plugin_http_call_seconds", "proxy_http_call latency.", []float64{0.001, 0.005, 0.02, 0.1, 0.5, 2, 10}, "plugin")
	hm.cpuUnits = cv("wasmgate_plugin_cpu_units_total", "Guest work in meter units (metered plugins); divide by the calibrated rate for CPU time.", "plugin")
	hm.limitRefusals = cv("wasmgate_plugin_limit_refusals_total", "Host functions refused by a plugins[].limits key (limit: header_map_bytes, header_map_fields, shared_data_bytes, shared_data_keys, queue_items, http_calls).", "plugin", "limit")
	if err != nil {
		return nil, err
	}
	inflight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wasmgate_wasm_calls_in_flight", Help: "Wasm calls running now (bounded by wasm.max_calls_in_flight)."},
		func() float64 { return float64(len(h.calls)) })
	gc := &guestCollector{h: h}
	for _, c := range []prometheus.Collector{inflight, gc} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
		hm.own = append(hm.own, c)
	}
	return hm, nil
}

func (hm *hostMetrics) unregister() {
	for _, c := range hm.own {
		hm.reg.Unregister(c)
	}
}

func (hm *hostMetrics) plugin(name string) *pluginMetrics {
	pm := &pluginMetrics{
		errors:          hm.errors.MustCurryWith(prometheus.Labels{"plugin": name}),
		traps:           hm.traps.WithLabelValues(name),
		timeouts:        hm.timeouts.WithLabelValues(name),
		ooms:            hm.ooms.WithLabelValues(name),
		callSeconds:     hm.callSeconds.WithLabelValues(name),
		queueWait:       hm.queueWait.WithLabelValues(name),
		vms:             hm.vms.WithLabelValues(name),
		replacements:    hm.replacements.WithLabelValues(name),
		recycled:        hm.recycled.WithLabelValues(name),
		reloads:         hm.reloads.MustCurryWith(prometheus.Labels{"plugin": name}),
		reloadSeconds:   hm.reloadSeconds.WithLabelValues(name),
		logDropped:      hm.logDropped.WithLabelValues(name),
		httpCalls:       hm.httpCalls.MustCurryWith(prometheus.Labels{"plugin": name}),
		httpCallSeconds: hm.httpCallSeconds.WithLabelValues(name),
		cpuUnits:        hm.cpuUnits.WithLabelValues(name),
		limitRefusals:   hm.limitRefusals.MustCurryWith(prometheus.Labels{"plugin": name}),
	}
	for i, n := range callbackNames {
		pm.calls[i] = hm.calls.WithLabelValues(name, n)
	}
	return pm
}

// guestMetrics are the metrics one plugin defined. Ids are shared by all
// VMs and versions of the plugin, so a counter survives VM replacement.
type guestMetrics struct {
	mu     sync.Mutex
	byName map[string]uint32
	list   []*guestMetric
}

type guestMetric struct {
	typ  uint32
	name string
	val  atomic.Int64
	hist prometheus.Histogram
}

var (
	descGuestCounter = prometheus.NewDesc("wasmgate_plugin_counter", "Counter defined by a plugin (proxy_define_metric).", []string{"plugin", "name"}, nil)
	descGuestGauge   = prometheus.NewDesc("wasmgate_plugin_gauge", "Gauge defined by a plugin (proxy_define_metric).", []string{"plugin", "name"}, nil)
	descPages        = prometheus.NewDesc("wasmgate_plugin_memory_pages", "Linear memory pages (64 KiB) across a plugin's VMs.", []string{"plugin"}, nil)
	descSharedBytes  = prometheus.NewDesc("wasmgate_plugin_shared_data_bytes", "Bytes held in a plugin's shared data (keys and values; bounded by limits.shared_data_bytes).", []string{"plugin"}, nil)
	descSharedKeys   = prometheus.NewDesc("wasmgate_plugin_shared_data_keys", "Keys in a plugin's shared data (bounded by limits.shared_data_keys).", []string{"plugin"}, nil)
	descQueueItems   = prometheus.NewDesc("wasmgate_plugin_shared_queue_items", "Items waiting in a plugin's shared queues (bounded per queue by limits.queue_items).", []string{"plugin"}, nil)
	descHTTPCalls    = prometheus.NewDesc("wasmgate_plugin_http_calls_in_flight", "proxy_http_call requests in flight across a plugin's VMs (bounded per VM by limits.http_calls).", []string{"plugin"}, nil)
)

func (g *guestMetrics) define(plugin string, typ uint32, name string) (uint32, uint32) {
	if typ > metricHistogram {
		return 0, statusBadArgument
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	key := string(rune('0'+typ)) + name
	if id, ok := g.byName[key]; ok {
		return id, statusOK
	}
	if len(g.list) >= maxMetricsPerVM {
		return 0, statusInternalFailure
	}
	if g.byName == nil {
		g.byName = map[string]uint32{}
	}
	gm := &guestMetric{typ: typ, name: name}
	if typ == metricHistogram {
		gm.hist = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "wasmgate_plugin_histogram",
			Help:        "Histogram defined by a plugin (proxy_define_metric).",
			ConstLabels: prometheus.Labels{"plugin": plugin, "name": name},
			Buckets:     prometheus.ExponentialBuckets(1, 4, 12),
		})
	}
	g.list = append(g.list, gm)
	id := uint32(len(g.list))
	g.byName[key] = id
	return id, statusOK
}

func (g *guestMetrics) get(id uint32) *guestMetric {
	g.mu.Lock()
	defer g.mu.Unlock()
	if id == 0 || int(id) > len(g.list) {
		return nil
	}
	return g.list[id-1]
}

// guestCollector exports plugin-defined metrics and memory pages. It is
// unchecked (Describe sends nothing) because plugins define names at run time.
type guestCollector struct{ h *Host }

func (c *guestCollector) Describe(chan<- *prometheus.Desc) {}

func (c *guestCollector) Collect(ch chan<- prometheus.Metric) {
	if !c.h.ready.Load() {
		return
	}
	slots, order := c.h.snapshot()
	for _, name := range order {
		s := slots[name]
		var pages uint64
		calls := 0
		for _, v := range s.versions() {
			v.mu.Lock()
			for _, m := range v.vms {
				pages += uint64(m.pages.Load())
				m.callsMu.Lock()
				calls += len(m.calls)
				m.callsMu.Unlock()
			}
			v.mu.Unlock()
		}
		ch <- prometheus.MustNewConstMetric(descPages, prometheus.GaugeValue, float64(pages), name)
		ch <- prometheus.MustNewConstMetric(descHTTPCalls, prometheus.GaugeValue, float64(calls), name)
		sharedBytes, keys, queued := c.h.shared.usage(name)
		ch <- prometheus.MustNewConstMetric(descSharedBytes, prometheus.GaugeValue, float64(sharedBytes), name)
		ch <- prometheus.MustNewConstMetric(descSharedKeys, prometheus.GaugeValue, float64(keys), name)
		ch <- prometheus.MustNewConstMetric(descQueueItems, prometheus.GaugeValue, float64(queued), name)
		g := &s.m.guest
		g.mu.Lock()
		list := append([]*guestMetric(nil), g.list...)
		g.mu.Unlock()
		for _, gm := range list {
			switch gm.typ {
			case metricCounter:
				ch <- prometheus.MustNewConstMetric(descGuestCounter, prometheus.CounterValue, float64(gm.val.Load()), name, gm.name)
			case metricGauge:
				ch <- prometheus.MustNewConstMetric(descGuestGauge, prometheus.GaugeValue, float64(gm.val.Load()), name, gm.name)
			case metricHistogram:
				gm.hist.Collect(ch)
			}
		}
	}
}

func (s *slot) versions() []*version {
	s.mu.Lock()
	out := append([]*version(nil), s.retired...)
	s.mu.Unlock()
	if v := s.cur.Load(); v != nil {
		out = append(out, v)
	}
	return out
}

func hDefineMetric(m *vm, s []uint64) uint32 {
	name, ok := m.readString(s[1], s[2])
	if !ok {
		return statusInvalidMemoryAccess
	}
	if len(name) == 0 || len(name) > 256 {
		return statusBadArgument
	}
	id, st := m.ver.s.m.guest.define(m.ver.s.name, uint32(s[0]), name)
	if st != statusOK {
		return st
	}
	if !m.putU32(s[3], id) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

func hRecordMetric(m *vm, s []uint64) uint32 {
	gm := m.ver.s.m.guest.get(uint32(s[0]))
	if gm == nil {
		return statusNotFound
	}
	switch gm.typ {
	case metricHistogram:
		gm.hist.Observe(float64(s[1]))
	default:
		gm.val.Store(int64(min(s[1], math.MaxInt64)))
	}
	return statusOK
}

func hIncrementMetric(m *vm, s []uint64) uint32 {
	gm := m.ver.s.m.guest.get(uint32(s[0]))
	if gm == nil {
		return statusNotFound
	}
	delta := int64(s[1])
	switch gm.typ {
	case metricCounter:
		if delta < 0 {
			return statusBadArgument
		}
	case metricHistogram:
		return statusBadArgument
	}
	gm.val.Add(delta)
	return statusOK
}

func hGetMetric(m *vm, s []uint64) uint32 {
	gm := m.ver.s.m.guest.get(uint32(s[0]))
	if gm == nil {
		return statusNotFound
	}
	if gm.typ == metricHistogram {
		return statusBadArgument
	}
	if !m.mem.WriteUint64Le(uint32(s[1]), uint64(gm.val.Load())) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}
