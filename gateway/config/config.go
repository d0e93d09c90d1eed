// Package config is the gateway's configuration: the YAML schema, its
// defaults, ${ENV} expansion and validation.
//
// The file is strict: an unknown key is an error that names its line, so a
// typo never silently falls back to a default. Every duration and size is
// human-readable ("10s", "16KiB"). Defaults live in one place, [Default] and
// the per-element defaults applied by [Config.applyDefaults]; docs/config.md
// lists them for users.
package config

import (
	"cmp"
	"encoding/json"
	"fmt"
	"runtime"
	"time"
)

// Config is the whole gateway configuration.
type Config struct {
	// Listen is the proxy listener address.
	Listen    string     `yaml:"listen"`
	Admin     Admin      `yaml:"admin"`
	Limits    Limits     `yaml:"limits"`
	Upstreams []Upstream `yaml:"upstreams"`
	Routes    []Route    `yaml:"routes"`
	Sessions  Sessions   `yaml:"sessions"`
	SSE       SSE        `yaml:"sse"`
	Storage   Storage    `yaml:"storage"`
	Wasm      Wasm       `yaml:"wasm"`
	Plugins   []Plugin   `yaml:"plugins"`
	Shutdown  Shutdown   `yaml:"shutdown"`
	Log       Log        `yaml:"log"`

	// Source is the file this configuration was read from ("" when built in).
	Source string `yaml:"-"`
}

// Admin is the admin listener: health, metrics, plugins, sessions.
type Admin struct {
	// Listen is the admin address; "" disables the admin listener.
	Listen string `yaml:"listen"`
	// Token is the bearer token required for anything that changes state or
	// reveals session data. Empty means those endpoints answer 403.
	Token string `yaml:"token"`
}

// Limits bound what one client can make the gateway hold.
type Limits struct {
	MaxHeaderBytes    Size     `yaml:"max_header_bytes"`
	MaxBodyBytes      Size     `yaml:"max_body_bytes"`
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	IdleTimeout       Duration `yaml:"idle_timeout"`
	// WriteTimeout bounds each single write to a client (never a whole
	// response, so streams are not cut).
	WriteTimeout  Duration `yaml:"write_timeout"`
	MaxConns      int      `yaml:"max_conns"`
	MaxConnsPerIP int      `yaml:"max_conns_per_ip"`
	// MaxHeaders caps the number of request header fields (431 past it);
	// 0 means no count limit, only max_header_bytes.
	MaxHeaders int `yaml:"max_headers"`
	// MaxRequestsPerConn closes a keep-alive connection after this many
	// requests (0 = unlimited).
	MaxRequestsPerConn int `yaml:"max_requests_per_conn"`
}

// Upstream is a named group of targets behind a fixed connection pool.
type Upstream struct {
	Name    string   `yaml:"name"`
	Targets []string `yaml:"targets"`
	// TLS dials targets with TLS.
	TLS bool `yaml:"tls"`
	// MaxConnsPerTarget is the fixed pool size for ordinary requests.
	MaxConnsPerTarget int `yaml:"max_conns_per_target"`
	// MaxStreamsPerTarget is the separate pool for long-lived responses
	// (SSE): each open stream holds one connection for its whole life.
	MaxStreamsPerTarget   int      `yaml:"max_streams_per_target"`
	ConnWaitTimeout       Duration `yaml:"conn_wait_timeout"`
	DialTimeout           Duration `yaml:"dial_timeout"`
	ResponseHeaderTimeout Duration `yaml:"response_header_timeout"`
	IdleConnTimeout       Duration `yaml:"idle_conn_timeout"`
	// Balance is round_robin or least_conns.
	Balance string `yaml:"balance"`
	// Retries is how many other targets an idempotent request may try when
	// nothing was sent yet (connection refused, pool full on that target).
	Retries     int       `yaml:"retries"`
	Passive     PassiveHC `yaml:"passive_health"`
	HealthCheck ActiveHC  `yaml:"health_check"`
}

// PassiveHC ejects a target after consecutive failures.
type PassiveHC struct {
	MaxFailures int      `yaml:"max_failures"`
	Cooldown    Duration `yaml:"cooldown"`
}

// ActiveHC probes targets; disabled when Path is empty.
type ActiveHC struct {
	Path     string   `yaml:"path"`
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
}

// Route matches requests by host and longest path prefix.
type Route struct {
	Name     string      `yaml:"name"`
	Match    Match       `yaml:"match"`
	Upstream string      `yaml:"upstream"`
	Plugins  []PluginRef `yaml:"plugins"`
	Session  SessionKey  `yaml:"session"`
	SSE      RouteSSE    `yaml:"sse"`
}

// Match selects requests; an empty Host matches any host.
type Match struct {
	Host       string `yaml:"host"`
	PathPrefix string `yaml:"path_prefix"`
}

// SessionKey says where a route finds the session id. Exactly one of the
// three is used; Header defaults to Mcp-Session-Id.
type SessionKey struct {
	Header string `yaml:"header"`
	Cookie string `yaml:"cookie"`
	Query  string `yaml:"query"`
}

// RouteSSE is per-route SSE behaviour.
type RouteSSE struct {
	// Replay is "upstream" (default: Last-Event-ID passes through) or
	// "gateway" (missed events are replayed from the store, then live).
	Replay string `yaml:"replay"`
}

// PluginRef names a plugin in a route's chain, optionally overriding its
// configuration. In YAML it is either a bare name or {name, config}.
type PluginRef struct {
	Name string `yaml:"name"`
	// Config, when set, replaces the plugin's configuration on this route.
	Config any `yaml:"config"`
}

// UnmarshalYAML accepts a plain string or a mapping.
func (p *PluginRef) UnmarshalYAML(unmarshal func(any) error) error {
	var name string
	if err := unmarshal(&name); err == nil {
		*p = PluginRef{Name: name}
		return nil
	}
	type plain PluginRef
	var v plain
	if err := unmarshal(&v); err != nil {
		return err
	}
	*p = PluginRef(v)
	return nil
}

// ConfigJSON returns the override configuration as JSON, or nil when the
// route does not override it.
func (p PluginRef) ConfigJSON() ([]byte, error) { return toJSON(p.Config) }

// Sessions bounds the session table.
type Sessions struct {
	IdleTimeout Duration `yaml:"idle_timeout"`
	MaxSessions int      `yaml:"max_sessions"`
	// CleanupInterval is how often the one cleanup loop expires idle sessions.
	CleanupInterval Duration `yaml:"cleanup_interval"`
	// CaptureBodyBytes is how much of each request body and SSE event data
	// is recorded.
	CaptureBodyBytes Size `yaml:"capture_body_bytes"`
	// Redact lists header names whose values are recorded as "[redacted]".
	Redact []string `yaml:"redact"`
}

// SSE configures the streaming relay.
type SSE struct {
	MaxEventBytes   Size     `yaml:"max_event_bytes"`
	PendingEvents   int      `yaml:"pending_events"`
	Heartbeat       Duration `yaml:"heartbeat"`
	TrackedEventIDs int      `yaml:"tracked_event_ids"`
	TrackedEventTTL Duration `yaml:"tracked_event_ttl"`
	// TrackedStreams bounds how many SSE streams per session keep tracked
	// event ids; past it the least recently used stream is forgotten.
	TrackedStreams    int      `yaml:"tracked_streams"`
	WriteStallTimeout Duration `yaml:"write_stall_timeout"`
}

// Storage configures session recording.
type Storage struct {
	// Enabled turns recording on; when off the sink discards.
	Enabled        bool     `yaml:"enabled"`
	Path           string   `yaml:"path"`
	QueueSize      int      `yaml:"queue_size"`
	BatchSize      int      `yaml:"batch_size"`
	SyncDepth      int      `yaml:"sync_depth"`
	SyncInterval   Duration `yaml:"sync_interval"`
	ExchangeWindow Duration `yaml:"exchange_window"`
	FlushInterval  Duration `yaml:"flush_interval"`
	Sync           bool     `yaml:"sync"`
	MaxAttempts    int      `yaml:"max_attempts"`
	RetryBase      Duration `yaml:"retry_base"`
	RetryCap       Duration `yaml:"retry_cap"`
	EnqueueTimeout Duration `yaml:"enqueue_timeout"`
	Retention      Duration `yaml:"retention"`
	MaxBytes       Size     `yaml:"max_bytes"`
	// EventPool is how many released session events are kept for reuse
	// (event.SetPoolLimit); 0 keeps none.
	EventPool int `yaml:"event_pool"`
}

// Wasm holds settings shared by all plugins.
type Wasm struct {
	// MaxCallsInFlight caps Wasm calls running at once across all plugins.
	MaxCallsInFlight int `yaml:"max_calls_in_flight"`
	// CacheDir is the on-disk compilation cache ("" = <storage.path>/wasm-cache).
	CacheDir string `yaml:"cache_dir"`
	// Watch reloads plugins whose file changes on disk.
	Watch bool `yaml:"watch"`
}

// Plugin is a proxy-wasm module and how it runs.
type Plugin struct {
	Name string `yaml:"name"`
	File string `yaml:"file"`
	// Config is any YAML; it reaches proxy_on_configure as JSON.
	Config any `yaml:"config"`
	// VMConfig is any YAML; it reaches proxy_on_vm_start as JSON.
	VMConfig      any      `yaml:"vm_config"`
	PoolSize      int      `yaml:"pool_size"`
	MemoryLimit   Size     `yaml:"memory_limit"`
	CPULimit      Duration `yaml:"cpu_limit"`
	QueueTimeout  Duration `yaml:"queue_timeout"`
	PauseTimeout  Duration `yaml:"pause_timeout"`
	FailurePolicy string   `yaml:"failure_policy"`
	// RecycleMemory drains a VM whose linear memory passes this size.
	RecycleMemory Size `yaml:"recycle_memory"`
	// Limits bound what the plugin can make the host hold through the ABI.
	Limits PluginLimits `yaml:"limits"`
	// CPUFallback says what happens to a module the meter cannot
	// instrument: CPUFallbackRefuse (default) refuses the plugin with the
	// meter's reason; CPUFallbackWatchdog runs it with wazero's
	// WithCloseOnContextDone and the watchdog (5–20x slower calls).
	CPUFallback string `yaml:"cpu_fallback"`
}

// PluginLimits bound what a plugin can make the host hold. Past one, the
// host function answers an error status (the guest sees the failure; the
// request goes on) and wasmgate_plugin_limit_refusals_total counts it.
type PluginLimits struct {
	// HeaderMapBytes and HeaderMapFields bound one header map a plugin
	// builds (serialized size, field count).
	HeaderMapBytes  Size `yaml:"header_map_bytes"`
	HeaderMapFields int  `yaml:"header_map_fields"`
	// SharedDataBytes and SharedDataKeys bound the plugin's shared data
	// (keys plus values, all its VMs and versions together).
	SharedDataBytes Size `yaml:"shared_data_bytes"`
	SharedDataKeys  int  `yaml:"shared_data_keys"`
	// QueueItems bounds the items waiting in one shared queue.
	QueueItems int `yaml:"queue_items"`
	// HTTPCalls bounds the proxy_http_call requests in flight per VM.
	HTTPCalls int `yaml:"http_calls"`
}

// ConfigJSON returns the plugin configuration as JSON (nil when unset).
func (p Plugin) ConfigJSON() ([]byte, error) { return toJSON(p.Config) }

// VMConfigJSON returns the VM configuration as JSON (nil when unset).
func (p Plugin) VMConfigJSON() ([]byte, error) { return toJSON(p.VMConfig) }

// Failure policies.
const (
	FailClosed = "fail_closed"
	FailOpen   = "fail_open"

	CPUFallbackRefuse   = "refuse"
	CPUFallbackWatchdog = "watchdog"
)

// Shutdown configures graceful shutdown.
type Shutdown struct {
	DrainTimeout Duration `yaml:"drain_timeout"`
}

// Log configures the process log.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Default returns the configuration used for every key the file leaves out.
func Default() *Config {
	return &Config{
		Listen: "127.0.0.1:8080",
		Admin:  Admin{Listen: "127.0.0.1:9901"},
		Limits: Limits{
			MaxHeaderBytes:    16 << 10,
			MaxHeaders:        100,
			MaxBodyBytes:      8 << 20,
			ReadHeaderTimeout: Duration(10 * time.Second),
			IdleTimeout:       Duration(120 * time.Second),
			WriteTimeout:      Duration(30 * time.Second),
			MaxConns:          20000,
		},
		Sessions: Sessions{
			IdleTimeout:      Duration(30 * time.Minute),
			MaxSessions:      100000,
			CleanupInterval:  Duration(30 * time.Second),
			CaptureBodyBytes: 4 << 10,
			Redact:           []string{"Authorization", "Cookie", "Set-Cookie", "X-Api-Key", "Proxy-Authorization"},
		},
		SSE: SSE{
			MaxEventBytes:     1 << 20,
			PendingEvents:     100,
			Heartbeat:         Duration(15 * time.Second),
			TrackedEventIDs:   100,
			TrackedEventTTL:   Duration(30 * time.Minute),
			TrackedStreams:    16,
			WriteStallTimeout: Duration(30 * time.Second),
		},
		Storage: Storage{
			Enabled:        true,
			Path:           "./data",
			QueueSize:      10000,
			BatchSize:      50,
			SyncDepth:      64,
			SyncInterval:   Duration(10 * time.Millisecond),
			ExchangeWindow: Duration(10 * time.Millisecond),
			FlushInterval:  Duration(10 * time.Millisecond),
			Sync:           true,
			MaxAttempts:    5,
			RetryBase:      Duration(100 * time.Millisecond),
			RetryCap:       Duration(5 * time.Second),
			EnqueueTimeout: Duration(5 * time.Millisecond),
			Retention:      Duration(7 * 24 * time.Hour),
			MaxBytes:       1 << 30,
			EventPool:      4096,
		},
		Wasm: Wasm{
			MaxCallsInFlight: 1024,
			Watch:            true,
		},
		Shutdown: Shutdown{DrainTimeout: Duration(15 * time.Second)},
		Log:      Log{Level: "info", Format: "text"},
	}
}

// Per-element defaults: list elements cannot be pre-filled before decoding,
// so their zero values are replaced here.
func (c *Config) applyDefaults() {
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		if u.MaxConnsPerTarget == 0 {
			u.MaxConnsPerTarget = 256
		}
		if u.MaxStreamsPerTarget == 0 {
			u.MaxStreamsPerTarget = 1024
		}
		if u.ConnWaitTimeout == 0 {
			u.ConnWaitTimeout = Duration(250 * time.Millisecond)
		}
		if u.DialTimeout == 0 {
			u.DialTimeout = Duration(2 * time.Second)
		}
		if u.ResponseHeaderTimeout == 0 {
			u.ResponseHeaderTimeout = Duration(30 * time.Second)
		}
		if u.IdleConnTimeout == 0 {
			u.IdleConnTimeout = Duration(60 * time.Second)
		}
		if u.Balance == "" {
			u.Balance = "round_robin"
		}
		if u.Passive.MaxFailures == 0 {
			u.Passive.MaxFailures = 5
		}
		if u.Passive.Cooldown == 0 {
			u.Passive.Cooldown = Duration(10 * time.Second)
		}
		if u.HealthCheck.Path != "" {
			if u.HealthCheck.Interval == 0 {
				u.HealthCheck.Interval = Duration(5 * time.Second)
			}
			if u.HealthCheck.Timeout == 0 {
				u.HealthCheck.Timeout = Duration(time.Second)
			}
		}
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Match.PathPrefix == "" {
			r.Match.PathPrefix = "/"
		}
		if r.Session.Header == "" && r.Session.Cookie == "" && r.Session.Query == "" {
			r.Session.Header = "Mcp-Session-Id"
		}
		if r.SSE.Replay == "" {
			r.SSE.Replay = "upstream"
		}
	}
	for i := range c.Plugins {
		c.Plugins[i].SetDefaults()
	}
	if c.Wasm.CacheDir == "" && c.Storage.Path != "" {
		c.Wasm.CacheDir = c.Storage.Path + "/wasm-cache"
	}
}

// SetDefaults fills in what p leaves out (documented in docs/config.md).
// The wasm host applies it too, for plugins configured without a file.
func (p *Plugin) SetDefaults() {
	if p.PoolSize == 0 {
		p.PoolSize = runtime.GOMAXPROCS(0)
	}
	if p.MemoryLimit == 0 {
		p.MemoryLimit = 64 << 20
	}
	if p.CPULimit == 0 {
		p.CPULimit = Duration(100 * time.Millisecond)
	}
	if p.QueueTimeout == 0 {
		p.QueueTimeout = Duration(100 * time.Millisecond)
	}
	if p.PauseTimeout == 0 {
		p.PauseTimeout = Duration(10 * time.Second)
	}
	if p.FailurePolicy == "" {
		p.FailurePolicy = FailClosed
	}
	if p.CPUFallback == "" {
		p.CPUFallback = CPUFallbackRefuse
	}
	if p.RecycleMemory == 0 {
		p.RecycleMemory = p.MemoryLimit / 2
	}
	p.Limits.setDefaults()
}

// DefaultPluginLimits are the plugins[].limits a file leaves out.
var DefaultPluginLimits = PluginLimits{
	HeaderMapBytes:  256 << 10,
	HeaderMapFields: 1024,
	SharedDataBytes: 16 << 20,
	SharedDataKeys:  10000,
	QueueItems:      10000,
	HTTPCalls:       64,
}

func (l *PluginLimits) setDefaults() {
	d := DefaultPluginLimits
	l.HeaderMapBytes = cmp.Or(l.HeaderMapBytes, d.HeaderMapBytes)
	l.HeaderMapFields = cmp.Or(l.HeaderMapFields, d.HeaderMapFields)
	l.SharedDataBytes = cmp.Or(l.SharedDataBytes, d.SharedDataBytes)
	l.SharedDataKeys = cmp.Or(l.SharedDataKeys, d.SharedDataKeys)
	l.QueueItems = cmp.Or(l.QueueItems, d.QueueItems)
	l.HTTPCalls = cmp.Or(l.HTTPCalls, d.HTTPCalls)
}

// Upstream returns the upstream with that name.
func (c *Config) Upstream(name string) (*Upstream, bool) {
	for i := range c.Upstreams {
		if c.Upstreams[i].Name == name {
			return &c.Upstreams[i], true
		}
	}
	return nil, false
}

// Plugin returns the plugin with that name.
func (c *Config) Plugin(name string) (*Plugin, bool) {
	for i := range c.Plugins {
		if c.Plugins[i].Name == name {
			return &c.Plugins[i], true
		}
	}
	return nil, false
}

// toJSON turns a YAML-decoded value into JSON. goccy/go-yaml decodes
// mappings as map[string]any, which encoding/json handles; a plain string is
// passed through as-is so that a plugin can take a non-JSON configuration.
func toJSON(v any) ([]byte, error) {
	switch t := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []byte(t), nil
	}
	b, err := json.Marshal(normalize(v))
	if err != nil {
		return nil, fmt.Errorf("encode plugin configuration as JSON: %w", err)
	}
	return b, nil
}

// normalize converts map[any]any (possible for non-string YAML keys) into
// map[string]any so encoding/json accepts it.
func normalize(v any) any {
	switch t := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, val := range t {
			m[fmt.Sprint(k)] = normalize(val)
		}
		return m
	case map[string]any:
		for k, val := range t {
			t[k] = normalize(val)
		}
		return t
	case []any:
		for i := range t {
			t[i] = normalize(t[i])
		}
		return t
	}
	return v
}
