package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/event"
	"github.com/wasmgate/wasmgate/gateway/session"
)

// TestForwardSessionRoutes checks that reading the session key (from the
// query or the Cookie field) does not change what the upstream receives on
// the in-place path: the request target as sent, not re-rendered from the
// parsed URI, and the Cookie field as it came, with recording off and on.
func TestForwardSessionRoutes(t *testing.T) {
	for _, recording := range []bool{false, true} {
		t.Run(fmt.Sprintf("recording=%v", recording), func(t *testing.T) {
			verifyNone(t)
			var mu sync.Mutex
			var seen []string
			up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				seen = append(seen, fmt.Sprintf("%s cookie=%q xff=%d", r.RequestURI, r.Header.Get("Cookie"), len(r.Header.Values("X-Forwarded-For"))))
				mu.Unlock()
				io.WriteString(w, "ok")
			}))
			cfg := testConfig(t, []string{up.addr}, func(c *config.Config) {
				c.Routes[0].Session = config.SessionKey{Cookie: "sid"}
				r := c.Routes[0]
				r.Name, r.Match.PathPrefix, r.Session = "q", "/q", config.SessionKey{Query: "session"}
				c.Routes = append([]config.Route{r}, c.Routes...)
			})
			var sink event.Sink = event.Discard
			mem := &memSink{}
			if recording {
				sink = mem
			}
			table := session.NewTable(cfg.Sessions, cfg.SSE, sink, testLogger(), prometheus.NewRegistry())
			defer table.Close()
			g := startGateway(t, cfg, tableSessions{table}, sink)

			c := dialGateway(t, g.addr, 10*time.Second)
			br := bufio.NewReader(c)
			for _, raw := range []string{
				"GET /q/a//b/./c/../d?session=s1&x=%2f&y HTTP/1.1\r\nHost: x\r\n\r\n",
				"GET /c/a//b/../d?x=%2f HTTP/1.1\r\nHost: x\r\nCookie: sid=s2;b=2;  c\r\n\r\n",
			} {
				send200(t, c, br, raw)
			}
			mu.Lock()
			defer mu.Unlock()
			want := []string{
				`/q/a//b/./c/../d?session=s1&x=%2f&y cookie="" xff=1`,
				`/c/a//b/../d?x=%2f cookie="sid=s2;b=2;  c" xff=1`,
			}
			if strings.Join(seen, "\n") != strings.Join(want, "\n") {
				t.Errorf("upstream saw\n%s\nwant\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
			}
			if !recording {
				return
			}
			// The request event still records the Cookie field.
			var req *event.Event
			for _, e := range mem.of("s2") {
				if e.Type == event.Request {
					req = e
					break
				}
			}
			if req == nil {
				t.Fatalf("no request event for session s2: %s", types(mem.of("s2")))
			}
			var cookie bool
			for _, h := range req.Headers {
				cookie = cookie || h.Name == "Cookie"
			}
			if !cookie {
				t.Errorf("request event without the Cookie field: %+v", req.Headers)
			}
		})
	}
}

// TestForwardRepeatedFields sends fields the rewrite reads on more than one
// line, on the in-place path (no body) and the copy path (a chunked body).
// As with httputil.ReverseProxy, every Connection line names fields to
// drop, and the gateway's X-Forwarded-For and Via entries come after all
// prior values: a second X-Forwarded-For line sent by the client must not
// end up after the client's address, where an upstream trusting the last
// entry would take it for the client.
func TestForwardRepeatedFields(t *testing.T) {
	verifyNone(t)
	var mu sync.Mutex
	var seen []string
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%s %s xa=%q xb=%q xff=%q via=%q", r.RequestURI, body,
			r.Header.Values("X-A"), r.Header.Values("X-B"), r.Header.Values("X-Forwarded-For"), r.Header.Values("Via")))
		mu.Unlock()
		w.Header()["Connection"] = []string{"X-Up"}
		w.Header()["Via"] = []string{"1.0 u1", "1.0 u2"}
		io.WriteString(w, "ok")
	}))
	g := startGateway(t, testConfig(t, []string{up.addr}, nil), nil, nil)

	c := dialGateway(t, g.addr, 10*time.Second)
	br := bufio.NewReader(c)
	const fields = "Host: x\r\nConnection: X-A\r\nConnection: X-B\r\nX-A: a\r\nX-B: b\r\n" +
		"X-Forwarded-For: 192.0.2.1\r\nX-Forwarded-For: 192.0.2.2\r\nVia: 1.0 a\r\nVia: 1.0 b\r\n"
	for _, raw := range []string{
		"GET /inplace HTTP/1.1\r\n" + fields + "\r\n",
		"POST /copy HTTP/1.1\r\n" + fields + "Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
		// Named in Connection, the prior values go with the hop.
		"GET /named HTTP/1.1\r\nHost: x\r\nConnection: Via, X-Forwarded-For\r\nX-Forwarded-For: 192.0.2.1\r\nVia: 1.0 a\r\n\r\n",
	} {
		resp, _ := send200(t, c, br, raw)
		if via := resp.Header.Values("Via"); len(via) != 1 || via[0] != "1.0 u1, 1.0 u2, 1.1 wasmgate" {
			t.Errorf("response Via %q", via)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	const rest = ` xa=[] xb=[] xff=["192.0.2.1, 192.0.2.2, 127.0.0.1"] via=["1.0 a, 1.0 b, 1.1 wasmgate"]`
	want := []string{"/inplace " + rest, "/copy ab" + rest,
		`/named  xa=[] xb=[] xff=["127.0.0.1"] via=["1.1 wasmgate"]`}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Errorf("upstream saw\n%s\nwant\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}

// TestForwardReplayedRequest checks that a request sent again (the in-place
// path forwards the client's own request, edited once) reaches the upstream
// as it did the first time: an upstream that closes each keep-alive
// connection unannounced after its answer makes the gateway send the next
// idempotent request again on a fresh connection, and a dial refused by a
// first target makes it try the next one.
func TestForwardReplayedRequest(t *testing.T) {
	verifyNone(t)
	var mu sync.Mutex
	var heads []string
	addr, _ := startRawUpstream(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				mu.Lock()
				heads = append(heads, head.String())
				mu.Unlock()
				// Answered as keep-alive, then closed.
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				return
			}
			if strings.HasPrefix(line, "X-Request-Id:") {
				line = "X-Request-Id: *\r\n" // a new one each time
			}
			head.WriteString(line)
		}
	})
	cfg := testConfig(t, []string{freeAddr(t), addr}, func(c *config.Config) {
		c.Upstreams[0].Retries = 1
	})
	g := startGateway(t, cfg, nil, nil)
	c := newClient(t)
	const n = 4
	// With a prior X-Forwarded-For the gateway's fields are set on the
	// header; without, they go as lines after it (Stream's fields).
	for _, prior := range []string{"192.0.2.1", ""} {
		mu.Lock()
		heads = nil
		mu.Unlock()
		for range n {
			req, _ := http.NewRequest("GET", "http://"+g.addr+"/r?a=%2f", nil)
			if prior != "" {
				req.Header.Set("X-Forwarded-For", prior)
			}
			req.Header.Set("Connection", "X-Hop")
			req.Header.Set("X-Hop", "1")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "ok" {
				t.Fatalf("status %d %q", resp.StatusCode, b)
			}
		}
		mu.Lock()
		if len(heads) != n {
			t.Fatalf("prior %q: upstream saw %d requests, want %d", prior, len(heads), n)
		}
		xff := "127.0.0.1"
		if prior != "" {
			xff = prior + ", " + xff
		}
		// A prior X-Forwarded-For line is replaced where the client put
		// it (before Accept-Encoding, which Go's client sends last).
		fields := "Accept-Encoding: gzip\r\nX-Forwarded-For: " + xff + "\r\n"
		if prior != "" {
			fields = "X-Forwarded-For: " + xff + "\r\nAccept-Encoding: gzip\r\n"
		}
		want := "GET /r?a=%2f HTTP/1.1\r\nUser-Agent: Go-http-client/1.1\r\nHost: " + g.addr + "\r\n" + fields +
			"X-Forwarded-Proto: http\r\nX-Forwarded-Host: " + g.addr + "\r\nVia: 1.1 wasmgate\r\nX-Request-Id: *\r\n"
		for i, h := range heads {
			if h != want {
				t.Errorf("prior %q: request %d reached the upstream as\n%q\nwant\n%q", prior, i, h, want)
			}
		}
		mu.Unlock()
	}
}

// TestForwardResponseAsSent checks that the client gets the upstream's
// response fields as sent: no Content-Type made up for a body without one
// (the header copy used to bring fasthttp's default text/plain back), the
// upstream's own Content-Type and Server kept, and a streamed (chunked)
// body relayed whole. (Date is the gateway's, as with nginx.)
func TestForwardResponseAsSent(t *testing.T) {
	verifyNone(t)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/none":
			w.Header()["Content-Type"] = nil // no sniffing either
		case "/typed":
			w.Header().Set("Content-Type", "application/x-test")
			w.Header().Set("Server", "up/1")
		case "/chunked":
			w.Header().Set("Content-Type", "application/x-test")
			w.(http.Flusher).Flush()
			io.WriteString(w, strings.Repeat("c", 100<<10))
			return
		}
		io.WriteString(w, "ok")
	}))
	g := startGateway(t, testConfig(t, []string{up.addr}, nil), nil, nil)
	c := newClient(t)
	for _, tc := range []struct{ path, ctype, server string }{
		{"/none", "", ""},
		{"/typed", "application/x-test", "up/1"},
		{"/chunked", "application/x-test", ""},
	} {
		resp, err := c.Get("http://" + g.addr + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := resp.Header.Values("Content-Type"); strings.Join(got, ",") != tc.ctype {
			t.Errorf("%s: Content-Type %q, want %q", tc.path, got, tc.ctype)
		}
		if tc.server != "" && resp.Header.Get("Server") != tc.server {
			t.Errorf("%s: Server %q, want %q", tc.path, resp.Header.Get("Server"), tc.server)
		}
		if want := map[string]int{"/chunked": 100 << 10}[tc.path]; want > 0 && len(b) != want {
			t.Errorf("%s: %d bytes, want %d", tc.path, len(b), want)
		}
		if resp.StatusCode != 200 || len(resp.Header.Values("Via")) != 1 {
			t.Errorf("%s: status %d, Via %q", tc.path, resp.StatusCode, resp.Header.Values("Via"))
		}
	}
}

// TestForwardNoInventedContentType: a request with a body and no
// Content-Type reaches the upstream, and its request event, without one
// (fasthttp writes "Content-Type: application/octet-stream" for such a
// request unless told not to), on the in-place path, the copy path
// (chunked and streamed bodies) and with recording.
func TestForwardNoInventedContentType(t *testing.T) {
	verifyNone(t)
	var mu sync.Mutex
	var seen []string
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%s %d ct=%q", r.URL.Path, len(b), r.Header.Values("Content-Type")))
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	cfg := testConfig(t, []string{up.addr}, nil)
	mem := &memSink{}
	table := session.NewTable(cfg.Sessions, cfg.SSE, mem, testLogger(), prometheus.NewRegistry())
	defer table.Close()
	g := startGateway(t, cfg, tableSessions{table}, mem)
	c := dialGateway(t, g.addr, 10*time.Second)
	br := bufio.NewReader(c)
	for _, raw := range []string{
		"POST /inline HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST /streamed HTTP/1.1\r\nHost: x\r\nContent-Length: 9000\r\n\r\n" + strings.Repeat("s", 9000),
		"POST /nobody HTTP/1.1\r\nHost: x\r\n\r\n",
		"PUT /chunked-put HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
		"POST /recorded HTTP/1.1\r\nHost: x\r\nMcp-Session-Id: ct-1\r\nContent-Length: 3\r\n\r\nabc",
		"POST /typed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
	} {
		send200(t, c, br, raw)
	}
	mu.Lock()
	got := strings.Join(seen, "\n")
	mu.Unlock()
	want := strings.Join([]string{
		`/inline 3 ct=[]`,
		`/chunked 3 ct=[]`,
		`/streamed 9000 ct=[]`,
		`/nobody 0 ct=[]`,
		`/chunked-put 2 ct=[]`,
		`/recorded 3 ct=[]`,
		`/typed 2 ct=["application/json"]`,
	}, "\n")
	if got != want {
		t.Errorf("upstream saw\n%s\nwant\n%s", got, want)
	}
	requests := 0
	for _, e := range mem.of("ct-1") {
		if e.Type != event.Request {
			continue
		}
		requests++
		for _, h := range e.Headers {
			if strings.EqualFold(h.Name, "Content-Type") {
				t.Errorf("request event records Content-Type %q the client did not send", h.Value)
			}
		}
	}
	if requests != 1 {
		t.Errorf("%d request events for session ct-1, want 1", requests)
	}
}

// TestForwardFieldOrder checks that removing fields (hop-by-hop ones, those
// a Connection line names, the client's X-Forwarded-Proto/-Host, repeated
// X-Forwarded-For lines joined into one) keeps the order of the rest, both
// ways, on the in-place path and the copy path: lines of one name stay in
// the order sent (RFC 9110 §5.3), and so do unrelated lines. fasthttp's
// delete moves the last field into the deleted one's place.
func TestForwardFieldOrder(t *testing.T) {
	const reqHead = "Host: x\r\nAccept: a\r\nX-A: 1\r\nConnection: close, x-drop\r\nX-Drop: z\r\n" +
		"X-Forwarded-For: 192.0.2.1\r\nX-A: 2\r\nX-Forwarded-Proto: https\r\nKeep-Alive: 5\r\n" +
		"X-Forwarded-For: 192.0.2.2\r\nX-A: 3\r\nX-C: c\r\nX-Forwarded-Host: evil\r\nX-D: d\r\n"
	const respHead = "HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nX-B: 1\r\nConnection: x-up\r\n" +
		"X-Up: z\r\nCache-Control: private\r\nSet-Cookie: a=1\r\nKeep-Alive: timeout=5\r\nX-B: 2\r\n" +
		"Connection: keep-alive\r\nSet-Cookie: b=2\r\nX-B: 3\r\nX-E: e\r\nContent-Length: 2\r\n\r\nok"
	var mu sync.Mutex
	var heads []string
	addr, _ := startRawUpstream(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line != "\r\n" {
				head.WriteString(line)
				continue
			}
			if strings.HasPrefix(head.String(), "POST") {
				if _, err := io.ReadFull(br, make([]byte, 2)); err != nil {
					return
				}
			}
			mu.Lock()
			heads = append(heads, head.String())
			mu.Unlock()
			head.Reset()
			if _, err := io.WriteString(c, respHead); err != nil {
				return
			}
		}
	})
	// only keeps the lines of raw (a header block) with one of names, in
	// order.
	only := func(raw string, names ...string) string {
		var kept []string
		for _, line := range strings.Split(raw, "\r\n") {
			name, _, ok := strings.Cut(line, ":")
			for _, n := range names {
				if ok && strings.EqualFold(name, n) {
					kept = append(kept, line)
				}
			}
		}
		return strings.Join(kept, " | ")
	}
	const wantReq = "Accept: a | X-A: 1 | X-A: 2 | X-A: 3 | X-C: c | X-D: d"
	const wantResp = "Cache-Control: no-store | X-B: 1 | Cache-Control: private | X-B: 2 | X-B: 3 | X-E: e"
	for path, g := range conformGateways(t, addr, nil) {
		for _, raw := range []string{
			"GET /p HTTP/1.1\r\n" + reqHead + "\r\n",
			"POST /p HTTP/1.1\r\n" + reqHead + "Content-Length: 2\r\n\r\nhi",
		} {
			t.Run(path+" "+raw[:4], func(t *testing.T) {
				mu.Lock()
				heads = nil
				mu.Unlock()
				resp := rawRequest(t, g.addr, raw, 5*time.Second)
				if statusOf(resp) != 200 {
					t.Fatalf("got %q", resp)
				}
				mu.Lock()
				defer mu.Unlock()
				if len(heads) != 1 {
					t.Fatalf("upstream saw %d requests", len(heads))
				}
				names := []string{"Accept", "X-A", "X-C", "X-D", "X-Drop", "Keep-Alive", "Connection"}
				if got := only(heads[0], names...); got != wantReq {
					t.Errorf("upstream got fields\n%s\nwant\n%s\n(header %q)", got, wantReq, heads[0])
				}
				if got := only(heads[0], "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"); got != "X-Forwarded-For: 192.0.2.1, 192.0.2.2, 127.0.0.1 | X-Forwarded-Proto: http | X-Forwarded-Host: x" {
					t.Errorf("upstream got forwarding fields %q", got)
				}
				head, _, _ := strings.Cut(resp, "\r\n\r\n")
				if got := only(head, "Cache-Control", "X-B", "X-E", "X-Up", "Keep-Alive"); got != wantResp {
					t.Errorf("client got fields\n%s\nwant\n%s\n(header %q)", got, wantResp, head)
				}
				if got := only(head, "Set-Cookie"); got != "Set-Cookie: a=1 | Set-Cookie: b=2" {
					t.Errorf("client got %q", got)
				}
			})
		}
	}
}

// TestForwardFieldOrderDateNamed: an upstream response whose Connection
// line names Date keeps the order of its other lines: fasthttp holds Date
// in the field list like any other field, so deleting it moves the last
// line into its place.
func TestForwardFieldOrderDateNamed(t *testing.T) {
	const resp = "HTTP/1.1 200 OK\r\nDate: Fri, 27 Nov 2026 10:00:00 GMT\r\nCache-Control: no-store\r\n" +
		"Cache-Control: private\r\nConnection: Date\r\nContent-Length: 2\r\n\r\nok"
	addr, _ := startRawUpstream(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				if _, err := io.WriteString(c, resp); err != nil {
					return
				}
			}
		}
	})
	g := startGateway(t, testConfig(t, []string{addr}, nil), nil, nil)
	got := rawRequest(t, g.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
	var cc []string
	for _, line := range strings.Split(got, "\r\n") {
		if strings.HasPrefix(line, "Cache-Control:") {
			cc = append(cc, line)
		}
	}
	if strings.Join(cc, " | ") != "Cache-Control: no-store | Cache-Control: private" {
		t.Fatalf("client got %q, want the Cache-Control lines in the order sent", got)
	}
}
