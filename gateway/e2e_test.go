package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wasmgate/wasmgate/examples/upstream/demo"
	"github.com/wasmgate/wasmgate/gateway"
	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/sse"
)

// TestEndToEndDemoUpstream drives the whole gateway against the demo
// upstream: an MCP session (initialize → call → notification stream →
// DELETE), a byte-exact SSE relay, and an upstream killed mid-stream.
func TestEndToEndDemoUpstream(t *testing.T) {
	opts := leakOpts()
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
	up, err := demo.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Kill()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
listen: 127.0.0.1:0
admin: {listen: ""}
upstreams: [{name: demo, targets: [%q]}]
routes: [{name: r, upstream: demo}]
storage: {enabled: false}
`, up.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler), Chains: chain.NopBuilder{}, Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown(context.Background())
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	base := "http://" + g.Addr()

	post := func(sid, body string) *http.Response {
		req, _ := http.NewRequest("POST", base+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if sid != "" {
			req.Header.Set("Mcp-Session-Id", sid)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := post("", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != 200 || sid == "" {
		t.Fatalf("initialize: %d, session %q", resp.StatusCode, sid)
	}
	if _, ok := g.Sessions().Get(sid); !ok {
		t.Fatal("gateway did not start the session the upstream issued")
	}

	// The notification stream, then a tool call that shows up on it.
	sreq, _ := http.NewRequest("GET", base+"/mcp", nil)
	sreq.Header.Set("Mcp-Session-Id", sid)
	sreq.Header.Set("Accept", "text/event-stream")
	sresp, err := c.Do(sreq)
	if err != nil {
		t.Fatal(err)
	}
	p := sse.NewParser(sresp.Body, 0)
	next := func() *sse.Event {
		for {
			ev, err := p.Next()
			if err != nil {
				t.Fatalf("notification stream: %v", err)
			}
			if ev.Dispatchable() {
				return ev
			}
		}
	}
	if ev := next(); !strings.Contains(string(ev.Data), "stream open") {
		t.Fatalf("first notification: %q", ev.Data)
	}
	resp = post(sid, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi there"}}}`)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("tools/call: %d", resp.StatusCode)
	}
	if ev := next(); !strings.Contains(string(ev.Data), "echo: hi there") {
		t.Fatalf("echo notification: %q", ev.Data)
	}
	dreq, _ := http.NewRequest("DELETE", base+"/mcp", nil)
	dreq.Header.Set("Mcp-Session-Id", sid)
	dresp, err := c.Do(dreq)
	if err != nil {
		t.Fatal(err)
	}
	dresp.Body.Close()
	if _, ok := g.Sessions().Get(sid); ok || dresp.StatusCode != 200 {
		t.Fatalf("DELETE: %d, session still present: %v", dresp.StatusCode, ok)
	}
	// The upstream ends the session's stream; the client sees the end.
	io.Copy(io.Discard, sresp.Body)
	sresp.Body.Close()

	// The mixed stream passes byte for byte.
	var want []byte
	for _, e := range demo.Mixed {
		want = e.AppendWire(want)
	}
	mresp, err := c.Get(base + "/sse/mixed")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if err != nil || string(got) != string(want) {
		t.Fatalf("mixed stream differs: %v\n got %q\nwant %q", err, got, want)
	}

	// An upstream killed mid-stream ends the client's stream promptly.
	conn, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "GET /sse?n=0&interval=10ms HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
	kresp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	kp := sse.NewParser(kresp.Body, 0)
	for i := 0; i < 3; i++ {
		if _, err := kp.Next(); err != nil {
			t.Fatal(err)
		}
	}
	up.Kill()
	start := time.Now()
	for {
		if _, err := kp.Next(); err != nil {
			if err == io.EOF {
				t.Fatal("killed upstream reported as a clean end of stream")
			}
			break
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("client stream ended %v after the upstream died", d)
	}
}
