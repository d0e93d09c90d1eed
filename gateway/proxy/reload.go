package proxy

import (
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/valyala/fasthttp"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/upstream"
)

// routeTable is one generation of routes. A configuration reload builds a
// new table and swaps it in whole; every request holds the table it matched
// on until it finishes, so the reload knows when nothing uses the old
// upstreams and plugins any more (Drained).
type routeTable struct {
	routes []*route // host-specific first, then longest prefix first

	refs      atomic.Int64
	retired   atomic.Bool
	drained   chan struct{}
	closeOnce sync.Once
}

// acquireRoutes returns the current table with a reference held for the
// caller. The reference is taken before the table is confirmed current, so
// a table that SetRoutes retired is never handed out after its drain.
func (p *Proxy) acquireRoutes() *routeTable {
	for {
		t := p.table.Load()
		t.refs.Add(1)
		if p.table.Load() == t {
			return t
		}
		t.release()
	}
}

func (t *routeTable) release() {
	if t.refs.Add(-1) == 0 && t.retired.Load() {
		t.closeOnce.Do(func() { close(t.drained) })
	}
}

// retire marks t replaced; drained closes once its last request ends.
func (t *routeTable) retire() {
	t.retired.Store(true)
	if t.refs.Load() == 0 {
		t.closeOnce.Do(func() { close(t.drained) })
	}
}

// buildRoutes resolves every route's upstream in p's pools and its chain.
func (p *Proxy) buildRoutes(routes []config.Route, chains map[string]chain.Chain) (*routeTable, error) {
	t := &routeTable{drained: make(chan struct{})}
	for _, rc := range routes {
		up, ok := p.ups.Get(rc.Upstream)
		if !ok {
			return nil, fmt.Errorf("route %q: unknown upstream %q", rc.Name, rc.Upstream)
		}
		ch := chains[rc.Name]
		if ch == nil {
			ch = chain.Nop
		}
		host := strings.ToLower(rc.Match.Host)
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		t.routes = append(t.routes, &route{
			cfg: rc, name: rc.Name, host: host, prefix: rc.Match.PathPrefix,
			up: up, chain: ch, m: p.m.route(rc.Name),
			sessionHeader: fasthttp.AppendNormalizedHeaderKey(nil, rc.Session.Header),
		})
	}
	sort.SliceStable(t.routes, func(i, j int) bool {
		a, b := t.routes[i], t.routes[j]
		if (a.host != "") != (b.host != "") {
			return a.host != ""
		}
		return len(a.prefix) > len(b.prefix)
	})
	return t, nil
}

// SetRoutes replaces the route table (a configuration reload): upstreams
// are looked up in the pools now, so the pools must already hold every
// upstream the routes name. Requests that already matched a route finish
// on it; the returned channel is closed when the last of them has ended
// (SSE streams included), after which the old table's upstreams and
// plugins may be closed. On error nothing changes.
func (p *Proxy) SetRoutes(routes []config.Route, chains map[string]chain.Chain) (drained <-chan struct{}, err error) {
	t, err := p.buildRoutes(routes, chains)
	if err != nil {
		return nil, err
	}
	old := p.table.Swap(t)
	old.retire()
	return old.drained, nil
}

// Upstream returns the upstream the named route uses now (for tests and
// status pages).
func (p *Proxy) Upstream(route string) (*upstream.Upstream, bool) {
	for _, r := range p.table.Load().routes {
		if r.name == route {
			return r.up, true
		}
	}
	return nil, false
}

// liveSettings are the proxy settings a configuration reload changes for
// the requests and streams that start afterwards.
type liveSettings struct {
	sse         config.SSE
	captureBody int
	redact      redactor
}

func (p *Proxy) settings() *liveSettings { return p.live.Load() }

// SetLive applies the relay's sse settings (max_event_bytes,
// pending_events, heartbeat, write_stall_timeout) and the recording
// settings sessions.capture_body_bytes and sessions.redact to requests and
// streams that start from now on (a configuration reload).
func (p *Proxy) SetLive(sse config.SSE, sessions config.Sessions) {
	p.live.Store(&liveSettings{
		sse:         sse,
		captureBody: sessions.CaptureBodyBytes.N(),
		redact:      newRedactor(sessions.Redact),
	})
}
