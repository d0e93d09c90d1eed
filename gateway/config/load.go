package config

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
)

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML is the configuration the binary runs when given no file: the
// demo upstream on 127.0.0.1:9000 behind one catch-all route.
func DefaultYAML() []byte { return defaultYAML }

// Load reads, expands, decodes and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	cfg.Source = path
	cfg.resolvePaths(filepath.Dir(path))
	return cfg, nil
}

// Parse decodes and validates a configuration document. ${NAME} and
// ${NAME:-default} are replaced from the environment before decoding; an
// unset variable without a default is an error.
func Parse(data []byte) (*Config, error) {
	expanded, err := expandEnv(data)
	if err != nil {
		return nil, err
	}
	cfg := Default()
	if err := yaml.UnmarshalWithOptions(expanded, cfg, yaml.Strict()); err != nil {
		return nil, errors.New(oneLine(yaml.FormatError(err, false, false)))
	}
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// oneLine keeps the first line of a goccy/go-yaml error ("[3:5] unknown
// field "x"") and drops its source excerpt.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

func expandEnv(data []byte) ([]byte, error) {
	var missing []string
	out := envRef.ReplaceAllFunc(data, func(m []byte) []byte {
		sub := envRef.FindSubmatch(m)
		name := string(sub[1])
		if v, ok := os.LookupEnv(name); ok {
			return []byte(v)
		}
		if sub[2] != nil {
			return sub[3]
		}
		missing = append(missing, name)
		return nil
	})
	if len(missing) > 0 {
		// An unset variable that the file uses is most often a deployment
		// mistake; say so instead of running with an empty value. Use
		// ${NAME:-} to make empty explicit.
		return nil, fmt.Errorf("environment variable %s is not set (use ${%s:-} for an empty default)", missing[0], missing[0])
	}
	return out, nil
}

// resolvePaths makes relative file paths relative to the config file's
// directory, so a config runs the same from any working directory.
func (c *Config) resolvePaths(dir string) {
	for i := range c.Plugins {
		if f := c.Plugins[i].File; f != "" && !filepath.IsAbs(f) {
			c.Plugins[i].File = filepath.Join(dir, f)
		}
	}
}

// Validate checks cross-references and ranges. The error names the first
// problem found.
func (c *Config) Validate() error {
	if err := checkAddr("listen", c.Listen); err != nil {
		return err
	}
	if c.Admin.Listen != "" {
		if err := checkAddr("admin.listen", c.Admin.Listen); err != nil {
			return err
		}
	}
	l := c.Limits
	if l.MaxHeaderBytes < 1024 {
		return fmt.Errorf("limits.max_header_bytes: %s is below the 1KiB minimum", l.MaxHeaderBytes)
	}
	if l.MaxBodyBytes <= 0 {
		return errors.New("limits.max_body_bytes must be positive")
	}
	if l.MaxHeaders < 0 {
		return errors.New("limits.max_headers must not be negative")
	}
	if l.MaxConns < 0 || l.MaxConnsPerIP < 0 {
		return errors.New("limits.max_conns and limits.max_conns_per_ip must not be negative")
	}
	upstreams := map[string]bool{}
	for i, u := range c.Upstreams {
		where := fmt.Sprintf("upstreams[%d]", i)
		if u.Name == "" {
			return fmt.Errorf("%s: name is required", where)
		}
		if upstreams[u.Name] {
			return fmt.Errorf("%s: duplicate upstream name %q", where, u.Name)
		}
		upstreams[u.Name] = true
		if len(u.Targets) == 0 {
			return fmt.Errorf("upstream %q: at least one target is required", u.Name)
		}
		for _, t := range u.Targets {
			if _, _, err := net.SplitHostPort(t); err != nil {
				return fmt.Errorf("upstream %q: target %q: want host:port", u.Name, t)
			}
		}
		if u.MaxConnsPerTarget < 1 || u.MaxStreamsPerTarget < 1 {
			return fmt.Errorf("upstream %q: max_conns_per_target and max_streams_per_target must be at least 1", u.Name)
		}
		if u.Balance != "round_robin" && u.Balance != "least_conns" {
			return fmt.Errorf("upstream %q: balance %q: want round_robin or least_conns", u.Name, u.Balance)
		}
		if u.Retries < 0 {
			return fmt.Errorf("upstream %q: retries must not be negative", u.Name)
		}
	}
	plugins := map[string]bool{}
	for i, p := range c.Plugins {
		where := fmt.Sprintf("plugins[%d]", i)
		if p.Name == "" {
			return fmt.Errorf("%s: name is required", where)
		}
		if plugins[p.Name] {
			return fmt.Errorf("%s: duplicate plugin name %q", where, p.Name)
		}
		plugins[p.Name] = true
		if p.File == "" {
			return fmt.Errorf("plugin %q: file is required", p.Name)
		}
		if p.FailurePolicy != FailClosed && p.FailurePolicy != FailOpen {
			return fmt.Errorf("plugin %q: failure_policy %q: want %s or %s", p.Name, p.FailurePolicy, FailClosed, FailOpen)
		}
		if p.CPUFallback != CPUFallbackRefuse && p.CPUFallback != CPUFallbackWatchdog {
			return fmt.Errorf("plugin %q: cpu_fallback %q: want %s or %s", p.Name, p.CPUFallback, CPUFallbackRefuse, CPUFallbackWatchdog)
		}
		if p.PoolSize < 1 || p.PoolSize > 1024 {
			return fmt.Errorf("plugin %q: pool_size %d: want 1..1024", p.Name, p.PoolSize)
		}
		if p.MemoryLimit < 64<<10 || p.MemoryLimit > 4<<30 {
			return fmt.Errorf("plugin %q: memory_limit %s: want 64KiB..4GiB", p.Name, p.MemoryLimit)
		}
		if err := p.Limits.validate(); err != nil {
			return fmt.Errorf("plugin %q: %w", p.Name, err)
		}
		if _, err := p.ConfigJSON(); err != nil {
			return fmt.Errorf("plugin %q: config: %w", p.Name, err)
		}
		if _, err := p.VMConfigJSON(); err != nil {
			return fmt.Errorf("plugin %q: vm_config: %w", p.Name, err)
		}
	}
	routes := map[string]bool{}
	for i, r := range c.Routes {
		where := fmt.Sprintf("routes[%d]", i)
		if r.Name == "" {
			return fmt.Errorf("%s: name is required", where)
		}
		if routes[r.Name] {
			return fmt.Errorf("%s: duplicate route name %q", where, r.Name)
		}
		routes[r.Name] = true
		if !strings.HasPrefix(r.Match.PathPrefix, "/") {
			return fmt.Errorf("route %q: match.path_prefix %q must start with /", r.Name, r.Match.PathPrefix)
		}
		if !upstreams[r.Upstream] {
			return fmt.Errorf("route %q: unknown upstream %q", r.Name, r.Upstream)
		}
		for _, ref := range r.Plugins {
			if !plugins[ref.Name] {
				return fmt.Errorf("route %q: unknown plugin %q", r.Name, ref.Name)
			}
			if _, err := ref.ConfigJSON(); err != nil {
				return fmt.Errorf("route %q: plugin %q: config: %w", r.Name, ref.Name, err)
			}
		}
		n := 0
		for _, s := range []string{r.Session.Header, r.Session.Cookie, r.Session.Query} {
			if s != "" {
				n++
			}
		}
		if n > 1 {
			return fmt.Errorf("route %q: session: set only one of header, cookie, query", r.Name)
		}
		if r.SSE.Replay != "upstream" && r.SSE.Replay != "gateway" {
			return fmt.Errorf("route %q: sse.replay %q: want upstream or gateway", r.Name, r.SSE.Replay)
		}
	}
	if c.Sessions.MaxSessions < 1 {
		return errors.New("sessions.max_sessions must be at least 1")
	}
	if c.SSE.PendingEvents < 1 {
		return errors.New("sse.pending_events must be at least 1")
	}
	if c.SSE.MaxEventBytes < 64 {
		return errors.New("sse.max_event_bytes must be at least 64B")
	}
	s := c.Storage
	if s.Enabled && s.Path == "" {
		return errors.New("storage.path is required when storage.enabled is true")
	}
	if s.QueueSize < 1 || s.BatchSize < 1 || s.SyncDepth < 1 || s.MaxAttempts < 1 {
		return errors.New("storage.queue_size, storage.batch_size, storage.sync_depth and storage.max_attempts must be at least 1")
	}
	if s.ExchangeWindow < 0 || s.ExchangeWindow > Duration(time.Second) {
		return errors.New("storage.exchange_window must be between 0 (off) and 1s")
	}
	if s.EventPool < 0 {
		return errors.New("storage.event_pool must be at least 0 (0 keeps no released events)")
	}
	if c.Wasm.MaxCallsInFlight < 1 {
		return errors.New("wasm.max_calls_in_flight must be at least 1")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level %q: want debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return fmt.Errorf("log.format %q: want text or json", c.Log.Format)
	}
	return nil
}

func checkAddr(key, addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%s: %q: want host:port", key, addr)
	}
	return nil
}

func (l PluginLimits) validate() error {
	switch {
	case l.HeaderMapBytes < 1<<10 || l.HeaderMapBytes > 64<<20:
		return fmt.Errorf("limits.header_map_bytes %s: want 1KiB..64MiB", l.HeaderMapBytes)
	case l.HeaderMapFields < 1 || l.HeaderMapFields > 1<<20:
		return fmt.Errorf("limits.header_map_fields %d: want 1..1048576", l.HeaderMapFields)
	case l.SharedDataBytes < 0 || l.SharedDataBytes > 4<<30:
		return fmt.Errorf("limits.shared_data_bytes %s: want up to 4GiB", l.SharedDataBytes)
	case l.SharedDataKeys < 0:
		return fmt.Errorf("limits.shared_data_keys %d must not be negative", l.SharedDataKeys)
	case l.QueueItems < 0:
		return fmt.Errorf("limits.queue_items %d must not be negative", l.QueueItems)
	case l.HTTPCalls < 0:
		return fmt.Errorf("limits.http_calls %d must not be negative", l.HTTPCalls)
	}
	return nil
}
