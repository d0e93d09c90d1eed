package proxy_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/sse"
)

func TestSSEClientDisconnectReleasesUpstream(t *testing.T) {
	verifyNone(t)
	upEnded := make(chan struct{}, 1)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { upEnded <- struct{}{} }()
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "id: %d\ndata: x\n\n", i); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}))
	g := startGateway(t, testConfig(t, []string{up.addr}, nil), nil, nil)
	resp, c := openSSE(t, g.addr, "/s")
	p := sse.NewParser(resp.Body, 0)
	for i := 0; i < 2; i++ {
		if _, err := p.Next(); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	waitUpstreamReleased(t, g, upEnded, "the client left")
}

// waitUpstreamReleased waits for the upstream handler to see its client
// (the gateway) leave, then for the stream-pool connection to be released.
func waitUpstreamReleased(t *testing.T, g *gw, upEnded <-chan struct{}, after string) {
	t.Helper()
	select {
	case <-upEnded:
	case <-time.After(3 * time.Second):
		t.Fatal("upstream stream still open 3s after " + after)
	}
	if open := metricValue(t, g, "wasmgate_upstream_streams_in_use"); open != 0 {
		t.Fatalf("%v stream-pool connections still in use", open)
	}
}

// idleSSEUpstream starts an upstream that opens an event stream, sends
// nothing and waits until its client leaves; then ended, if not nil, gets a
// value.
func idleSSEUpstream(t *testing.T, ended chan<- struct{}) *testUpstream {
	return startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ended != nil {
			defer func() { ended <- struct{}{} }()
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
}

// metricValue returns the first sample of a gauge or counter named name.
func metricValue(t *testing.T, g *gw, name string) float64 {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		mfs, err := g.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name && len(mf.GetMetric()) > 0 {
				m := mf.GetMetric()[0]
				v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
				if v == 0 || time.Now().After(deadline) {
					return v
				}
			}
		}
		if time.Now().After(deadline) {
			return -1
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStalledClientOnLargeResponseIsDropped(t *testing.T) {
	verifyNone(t)
	upErr := make(chan error, 1)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(1<<30))
		_, err := io.Copy(w, &patternReader{n: 1 << 30})
		upErr <- err
	}))
	g := startGateway(t, testConfig(t, []string{up.addr}, func(c *config.Config) {
		c.Limits.WriteTimeout = config.Duration(300 * time.Millisecond)
	}), nil, nil)
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	// Read nothing: the gateway's write stalls, the per-write deadline
	// drops the client, and the upstream connection is closed.
	select {
	case err := <-upErr:
		if err == nil {
			t.Fatal("upstream wrote 1 GiB to a client that reads nothing")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stalled client not dropped within 10s")
	}
}

// A client that leaves an idle stream is noticed by the heartbeat, whose
// failed write closes the upstream connection under the waiting relay.
func TestSSEHeartbeatNoticesGoneClient(t *testing.T) {
	verifyNone(t)
	upEnded := make(chan struct{}, 1)
	up := idleSSEUpstream(t, upEnded)
	g := startGateway(t, testConfig(t, []string{up.addr}, func(c *config.Config) {
		c.SSE.Heartbeat = config.Duration(50 * time.Millisecond)
	}), nil, nil)
	_, c := openSSE(t, g.addr, "/s")
	c.Close()
	waitUpstreamReleased(t, g, upEnded, "the client left an idle stream")
	if open := metricValue(t, g, "wasmgate_sse_streams_open"); open != 0 {
		t.Fatalf("%v SSE streams still open", open)
	}
}

// Proxy.Close ends a stream whose client takes nothing by closing its
// connection once the deadline passes, instead of waiting out
// write_stall_timeout.
func TestSSECloseDeadlineCutsStalledClient(t *testing.T) {
	verifyNone(t)
	payload := strings.Repeat("x", 16<<10)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "id: %d\ndata: %s\n\n", i, payload); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}))
	g := startGateway(t, testConfig(t, []string{up.addr}, func(c *config.Config) {
		c.SSE.WriteStallTimeout = config.Duration(time.Minute)
	}), nil, nil)
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	io.WriteString(c, "GET /s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
	// Read nothing until the gateway's socket buffers are full.
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	g.proxy.Close(time.Now().Add(200 * time.Millisecond))
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("Close returned after %v", d)
	}
	if open := metricValue(t, g, "wasmgate_sse_streams_open"); open != 0 {
		t.Fatalf("%v SSE streams still open after Close", open)
	}
}
