package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/gateway"
	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/event"
	"github.com/wasmgate/wasmgate/gateway/store"
)

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func writeConfig(t *testing.T, yaml string) string {
	p := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runSessions(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := sessionsMain(args, &out, &errb)
	return code, out.String(), errb.String()
}

// checkExport asserts JSON lines with the required fields and types.
func checkExport(t *testing.T, out string, session string, wantTypes string) {
	t.Helper()
	var types []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		if m["session"] != session {
			t.Fatalf("export line %q: wrong session", line)
		}
		if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(m["time"])); err != nil {
			t.Fatalf("export line %q: time: %v", line, err)
		}
		if _, ok := m["seq"].(float64); !ok {
			t.Fatalf("export line %q: no seq", line)
		}
		types = append(types, fmt.Sprint(m["type"]))
	}
	if got := strings.Join(types, " "); got != wantTypes {
		t.Fatalf("exported types %q, want %q", got, wantTypes)
	}
}

// TestSessionsFromStore: with no gateway running the command opens the
// store read-only; while another handle holds it, it says so.
func TestSessionsFromStore(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := store.NewWorker(s, store.WorkerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []*event.Event{
		{Session: "alpha", Type: event.SessionStart, Route: "mcp"},
		{Session: "alpha", Type: event.Request, Method: "POST", Path: "/mcp", Body: []byte(`{"x":1}`)},
		{Session: "alpha", Type: event.Response, Status: 200, Latency: time.Millisecond},
		{Session: "beta", Type: event.SessionStart},
	} {
		w.Record(e)
	}
	w.Close()
	cfg := writeConfig(t, fmt.Sprintf("admin: {listen: %q, token: t}\nstorage: {path: %q}\n", freeAddr(t), dir))

	code, _, stderr := runSessions("list", "-config", cfg)
	if code != 1 || !strings.Contains(stderr, "locked") {
		t.Fatalf("list with the store held open: %d %q", code, stderr)
	}
	s.Close()

	code, out, stderr := runSessions("list", "-config", cfg)
	if code != 0 || !strings.Contains(out, "alpha") || !strings.Contains(out, "beta") || strings.Index(out, "beta") > strings.Index(out, "alpha") {
		t.Fatalf("list: %d %q %q", code, out, stderr)
	}
	code, out, stderr = runSessions("show", "alpha", "-config", cfg)
	if code != 0 || !strings.Contains(out, "POST /mcp") || !strings.Contains(out, "200 for") {
		t.Fatalf("show: %d %q %q", code, out, stderr)
	}
	code, out, stderr = runSessions("export", "-config", cfg, "alpha")
	if code != 0 {
		t.Fatalf("export: %d %q", code, stderr)
	}
	checkExport(t, out, "alpha", "session_start request response")

	for _, args := range [][]string{
		{"show", "nope", "-config", cfg},
		{"export", "nope", "-config", cfg},
	} {
		if code, _, stderr := runSessions(args...); code != 1 || !strings.Contains(stderr, `"nope": session not recorded`) {
			t.Errorf("%v: %d %q", args, code, stderr)
		}
	}
	missing := writeConfig(t, fmt.Sprintf("admin: {listen: %q}\nstorage: {path: %q}\n", freeAddr(t), dir+"/none"))
	if code, _, stderr := runSessions("list", "-config", missing); code != 1 || !strings.Contains(stderr, "no store at storage.path") {
		t.Errorf("missing store: %d %q", code, stderr)
	}
	for _, args := range [][]string{{}, {"frob"}, {"show"}, {"list", "extra"}} {
		if code, _, _ := runSessions(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// TestSessionsFromRunningGateway: the store is locked by the gateway, so
// the answers can only come from its admin API.
func TestSessionsFromRunningGateway(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go up.Serve(ln)
	defer up.Close()

	yaml := fmt.Sprintf(`
listen: 127.0.0.1:0
admin: {listen: %q, token: tok}
upstreams: [{name: up, targets: [%q]}]
routes: [{name: r, upstream: up}]
storage: {path: %q}
`, freeAddr(t), ln.Addr().String(), t.TempDir())
	path := writeConfig(t, yaml)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler), Chains: chain.NopBuilder{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown(context.Background())
	c := &http.Client{Transport: &http.Transport{}}
	for range 3 {
		req, _ := http.NewRequest("GET", "http://"+g.Addr()+"/a", nil)
		req.Header.Set("Mcp-Session-Id", "live-1")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	c.CloseIdleConnections()

	var out string
	deadline := time.Now().Add(5 * time.Second)
	for {
		var code int
		var stderr string
		code, out, stderr = runSessions("export", "live-1", "-config", path)
		if code == 0 && strings.Count(out, "\n") == 7 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("export from the running gateway: %d %q %q", code, out, stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkExport(t, out, "live-1", "session_start request response request response request response")
	if code, out, stderr := runSessions("list", "-config", path); code != 0 || !strings.Contains(out, "live-1") {
		t.Fatalf("list: %d %q %q", code, out, stderr)
	}
	if code, out, stderr := runSessions("show", "-config", path, "live-1"); code != 0 || strings.Count(out, "GET /a") != 6 {
		t.Fatalf("show: %d %q %q", code, out, stderr)
	}

	// A wrong token is reported, not papered over with the locked store.
	bad := writeConfig(t, strings.Replace(yaml, "token: tok", "token: wrong", 1))
	if code, _, stderr := runSessions("list", "-config", bad); code != 1 || !strings.Contains(stderr, "401") {
		t.Fatalf("wrong token: %d %q", code, stderr)
	}
}
