package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmgate/wasmgate/gateway/config"
)

func ups(specs ...string) []config.Upstream {
	var out []config.Upstream
	for _, s := range specs {
		var name, target string
		var conns int
		fmt.Sscanf(s, "%s %s %d", &name, &target, &conns)
		out = append(out, config.Upstream{Name: name, Targets: []string{target}, MaxConnsPerTarget: conns, MaxStreamsPerTarget: 8})
	}
	return out
}

// gauge reads the conns-in-use gauge of one target; ok is false when it is
// not exported (and fails the test when exported twice).
func gauge(t *testing.T, reg *prometheus.Registry, upstream, target string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found, v := 0, 0.0
	for _, mf := range mfs {
		if mf.GetName() != "wasmgate_upstream_conns_in_use" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["upstream"] == upstream && l["target"] == target {
				found++
				v = m.GetGauge().GetValue()
			}
		}
	}
	if found > 1 {
		t.Fatalf("%s/%s exported %d times", upstream, target, found)
	}
	return v, found == 1
}

func TestPoolsUpdate(t *testing.T) {
	reg := prometheus.NewRegistry()
	p, err := NewPools(ups("a 127.0.0.1:1 4", "keep 127.0.0.1:2 4", "gone 127.0.0.1:3 4"), slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	oldA, _ := p.Get("a")
	keep, _ := p.Get("keep")
	oldA.targets[0].inFlight.Add(1) // a request still holds the old pool

	upd, err := p.Update(ups("a 127.0.0.1:1 8", "keep 127.0.0.1:2 4", "new 127.0.0.1:4 4"))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(upd.Added, upd.Changed, upd.Removed); got != "[new] [a] [gone]" {
		t.Fatalf("update %s", got)
	}
	if a, _ := p.Get("a"); a == oldA || a.targets[0].hc.MaxConns != 8 {
		t.Fatal("changed upstream kept its old pools")
	}
	if k, _ := p.Get("keep"); k != keep {
		t.Fatal("unchanged upstream got new pools")
	}
	if _, ok := p.Get("gone"); ok {
		t.Fatal("removed upstream still resolves")
	}
	if err := p.Do("gone", nil, nil, 0); !errors.Is(err, ErrUnknownUpstream) {
		t.Fatalf("Do on a removed upstream: %v", err)
	}
	// The gauges follow the new pools: one series each, reading the new
	// target (the old one still has a request in flight).
	if v, ok := gauge(t, reg, "a", "127.0.0.1:1"); !ok || v != 0 {
		t.Fatalf("a's gauge: %v %v", v, ok)
	}
	if _, ok := gauge(t, reg, "gone", "127.0.0.1:3"); ok {
		t.Fatal("removed upstream still exported")
	}
	if _, ok := gauge(t, reg, "new", "127.0.0.1:4"); !ok {
		t.Fatal("added upstream not exported")
	}

	// Replaced pools close only once nothing holds them.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.CloseRetired(ctx, upd); err == nil {
		t.Fatal("closed a pool with a request in flight")
	}
	oldA.targets[0].Release()
	if err := p.CloseRetired(context.Background(), upd); err != nil {
		t.Fatal(err)
	}
	if len(p.retired) != 0 {
		t.Fatalf("%d retired upstreams left", len(p.retired))
	}

	if _, err := p.Update(ups("a 127.0.0.1:1 8", "a 127.0.0.1:5 8")); err == nil {
		t.Fatal("duplicate upstream accepted")
	}
	if a, _ := p.Get("a"); a.targets[0].hc.MaxConns != 8 {
		t.Fatal("a failed update changed something")
	}
}
