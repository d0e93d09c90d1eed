package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
)

// recordingUpstream records, per request, the version, target, Host and
// X-Forwarded-Host it received, and counts the connections it accepted.
type recordingUpstream struct {
	*testUpstream
	mu    sync.Mutex
	seen  []string
	conns atomic.Int32
}

func startRecordingUpstream(t *testing.T) *recordingUpstream {
	u := &recordingUpstream{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u.mu.Lock()
			u.seen = append(u.seen, fmt.Sprintf("%s %s %s host=%s xfh=%s", r.Method, r.RequestURI, r.Proto, r.Host, r.Header.Get("X-Forwarded-Host")))
			u.mu.Unlock()
			io.WriteString(w, "ok")
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				u.conns.Add(1)
			}
		},
		// OPTIONS * reaches the handler, to be recorded.
		DisableGeneralOptionsHandler: true,
	}
	u.testUpstream = &testUpstream{Server: srv, ln: ln, addr: ln.Addr().String()}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return u
}

func (u *recordingUpstream) take() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.seen
	u.seen = nil
	return s
}

// conformGateways starts a gateway on the in-place path (no plugin) and
// one on the copy path (a plugin chain that changes nothing) in front of up.
func conformGateways(t *testing.T, up string, mutate func(*config.Config)) map[string]*gw {
	return map[string]*gw{
		"in-place": startGateway(t, testConfig(t, []string{up}, mutate), nil, nil),
		"copy":     startGatewayChains(t, testConfig(t, []string{up}, mutate), map[string]chain.Chain{"r": &editChain{}}),
	}
}

// An HTTP/1.0 request goes upstream as HTTP/1.1 (RFC 9110 §6.2), on a
// pooled upstream connection; the client still gets an HTTP/1.0-readable
// answer, its connection closed unless it asked for keep-alive.
func TestHTTP10ForwardedAsHTTP11(t *testing.T) {
	for _, path := range []string{"in-place", "copy"} {
		t.Run(path, func(t *testing.T) {
			verifyNone(t)
			up := startRecordingUpstream(t)
			g := conformGateways(t, up.addr, nil)[path]

			// No keep-alive: answered, then closed.
			c := dialGateway(t, g.addr, 10*time.Second)
			br := bufio.NewReader(c)
			get(t, c, br, "GET /one?q=1 HTTP/1.0\r\nHost: x\r\n\r\n")
			if n, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("HTTP/1.0 connection without keep-alive still open (%v, %v)", n, err)
			}

			// Keep-alive: two answers on one connection, which stays open.
			c2 := dialGateway(t, g.addr, 10*time.Second)
			br2 := bufio.NewReader(c2)
			for _, p := range []string{"/two", "/three"} {
				resp := get(t, c2, br2, "GET "+p+" HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
				if resp.Close {
					t.Fatal("HTTP/1.0 keep-alive connection closed")
				}
			}
			// A body to a 1.0 client has a length (not chunked).
			resp, b := send200(t, c2, br2, "POST /four HTTP/1.0\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
			if string(b) != "ok" || resp.ContentLength != 2 || len(resp.TransferEncoding) > 0 {
				t.Fatalf("POST over HTTP/1.0: body %q length %d te %v", b, resp.ContentLength, resp.TransferEncoding)
			}

			want := []string{
				"GET /one?q=1 HTTP/1.1 host=x xfh=x",
				"GET /two HTTP/1.1 host=x xfh=x",
				"GET /three HTTP/1.1 host=x xfh=x",
				"POST /four HTTP/1.1 host=x xfh=x",
			}
			if got := up.take(); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("upstream saw\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if n := up.conns.Load(); n != 1 {
				t.Errorf("upstream accepted %d connections for four sequential requests, want 1 (pooled)", n)
			}
		})
	}
}

// An absolute-form target goes upstream in origin-form with its authority
// as Host (RFC 9112 §3.2.2), and that authority, not the Host field,
// routes the request and is X-Forwarded-Host. A target of no form a
// gateway forwards is refused with a reason, and CONNECT (a tunnel) with
// a 400 that says so.
func TestRequestTargetForms(t *testing.T) {
	for _, path := range []string{"in-place", "copy"} {
		t.Run(path, func(t *testing.T) {
			verifyNone(t)
			up := startRecordingUpstream(t)
			g := conformGateways(t, up.addr, func(c *config.Config) {
				c.Routes[0].Match.Host = "a.example"
			})[path]
			for _, tc := range []struct {
				name, raw string
				code      int
				want      string // what the upstream saw, or the reason in the answer
			}{
				{"origin-form", "GET /p?q=1 HTTP/1.1\r\nHost: a.example\r\n\r\n", 200, "GET /p?q=1 HTTP/1.1 host=a.example xfh=a.example"},
				{"absolute-form", "GET http://a.example/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n", 200, "GET /p?q=1 HTTP/1.1 host=a.example xfh=a.example"},
				{"absolute-form, no Host field (HTTP/1.1 needs one)", "GET http://a.example/p HTTP/1.1\r\n\r\n", 400, "malformed request"},
				{"absolute-form https, port, body", "POST https://a.example:8443/b//c?x=%2f HTTP/1.1\r\nHost: a.example\r\nContent-Length: 2\r\n\r\nhi", 200, "POST /b//c?x=%2f HTTP/1.1 host=a.example:8443 xfh=a.example:8443"},
				{"absolute-form, empty path", "GET http://a.example HTTP/1.1\r\nHost: a.example\r\n\r\n", 200, "GET / HTTP/1.1 host=a.example xfh=a.example"},
				{"absolute-form, query only", "GET HTTP://a.example?q HTTP/1.1\r\nHost: a.example\r\n\r\n", 200, "GET /?q HTTP/1.1 host=a.example xfh=a.example"},
				{"absolute-form HTTP/1.0", "GET http://a.example/ten HTTP/1.0\r\n\r\n", 200, "GET /ten HTTP/1.1 host=a.example xfh=a.example"},
				{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n", 200, "OPTIONS * HTTP/1.1 host=a.example xfh=a.example"},
				{"authority wins over Host", "GET http://other/p HTTP/1.1\r\nHost: a.example\r\n\r\n", 404, "no route"},
				{"other scheme", "GET ftp://a.example/p HTTP/1.1\r\nHost: a.example\r\n\r\n", 400, "request target"},
				{"empty authority", "GET http:///p HTTP/1.1\r\nHost: a.example\r\n\r\n", 400, "request target"},
				{"userinfo", "GET http://u:p@a.example/p HTTP/1.1\r\nHost: a.example\r\n\r\n", 400, "request target"},
				{"relative target", "GET foo HTTP/1.1\r\nHost: a.example\r\n\r\n", 400, "request target"},
				{"authority-form outside CONNECT", "GET a.example:80 HTTP/1.1\r\nHost: a.example\r\n\r\n", 400, "request target"},
				{"asterisk outside OPTIONS", "GET * HTTP/1.1\r\nHost: a.example\r\n\r\n", 400, "request target"},
				{"asterisk, POST with a body", "POST * HTTP/1.1\r\nHost: a.example\r\nContent-Length: 2\r\n\r\nhi", 400, "request target"},
				{"asterisk, lower-case options", "options * HTTP/1.1\r\nHost: a.example\r\n\r\n", 400, "request target"},
				{"CONNECT", "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", 400, "CONNECT is not supported"},
				{"CONNECT, origin-form", "CONNECT /p HTTP/1.1\r\nHost: a.example\r\n\r\n", 400, "CONNECT is not supported"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					resp := rawRequest(t, g.addr, strings.Replace(tc.raw, "\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1), 5*time.Second)
					got := up.take()
					if statusOf(resp) != tc.code {
						t.Fatalf("got %q, want %d (upstream saw %q)", resp, tc.code, got)
					}
					if tc.code != 200 {
						if !strings.Contains(resp, tc.want) || len(got) > 0 {
							t.Fatalf("got %q, upstream saw %q; want %d %q and nothing forwarded", resp, got, tc.code, tc.want)
						}
						return
					}
					if len(got) != 1 || got[0] != tc.want {
						t.Fatalf("upstream saw %q, want %q", got, tc.want)
					}
				})
			}
			// A refused target closes the connection: a request pipelined
			// behind it is not served.
			for _, bad := range []string{"GET * HTTP/1.1\r\n", "OPTIONS http://u@a.example/ HTTP/1.1\r\n"} {
				resp := rawRequest(t, g.addr, bad+"Host: a.example\r\n\r\nGET /next HTTP/1.1\r\nHost: a.example\r\n\r\n", 5*time.Second)
				if statusOf(resp) != 400 || !strings.Contains(resp, "request target") || !strings.Contains(resp, "Connection: close") || strings.Count(resp, "HTTP/1.1 ") != 1 {
					t.Fatalf("%q: got %q, want one 400 and the connection closed", bad, resp)
				}
				if got := up.take(); len(got) > 0 {
					t.Fatalf("%q: upstream saw %q", bad, got)
				}
			}
		})
	}
}

// A header line ended by LF alone is refused with 400 and the connection
// closed, never forwarded (RFC 9112 §2.2 lets a recipient reject it):
// fasthttp ends a block at a bare-LF empty line once a CRLFCRLF follows
// anywhere, so a peer ending lines at CRLF only would take the next request
// for part of this one. A bare CR is a malformed request. A block of
// bare-LF lines with no CRLFCRLF after it is never complete for fasthttp:
// it is answered when limits.read_header_timeout runs out.
func TestBareLFAndCR(t *testing.T) {
	for _, path := range []string{"in-place", "copy"} {
		t.Run(path, func(t *testing.T) {
			verifyNone(t)
			up := startRecordingUpstream(t)
			g := conformGateways(t, up.addr, func(c *config.Config) {
				c.Limits.ReadHeaderTimeout = config.Duration(300 * time.Millisecond)
			})[path]
			for _, tc := range []struct {
				name, raw string
				code      int
				reason    string
			}{
				{"bare LF after a field", "GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", 400, "bare LF in header"},
				{"bare LF after a folded field", "GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\nX-B: d\r\n\r\n", 400, "bare LF in header"},
				{"bare LF before the last field", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\nX-B: d\r\n\r\nhi", 400, "bare LF in header"},
				{"bare-LF block ahead of a smuggled request", "GET / HTTP/1.1\r\nHost: x\nX-A: b\n\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bare LF in header"},
				{"bare-LF request ahead of a smuggled request", "GET / HTTP/1.1\nHost: x\n\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bare LF in header"},
				{"bare CR in a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400, "malformed request"},
				{"bare CR ending a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: ab\r\r\n\r\n", 400, "malformed request"},
				{"bare CR in a name", "GET / HTTP/1.1\r\nHost: x\r\nX-A\r: b\r\n\r\n", 400, "malformed request"},
				{"bare CR in the request line", "GET / HTTP/1.1\r\r\nHost: x\r\n\r\n", 400, "malformed request"},
				{"bare-LF block, never complete", "GET / HTTP/1.1\nHost: x\n\n", 408, "request not received in time"},
				{"bare-LF empty line, never complete", "GET / HTTP/1.1\r\nHost: x\r\nX-A: b\n\r\n", 408, "request not received in time"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					resp := rawRequest(t, g.addr, tc.raw, 5*time.Second)
					if got := up.take(); len(got) > 0 {
						t.Fatalf("upstream saw %q", got)
					}
					if statusOf(resp) != tc.code || !strings.Contains(resp, tc.reason) || !strings.Contains(resp, "Connection: close") {
						t.Fatalf("got %q, want %d %q and the connection closed", resp, tc.code, tc.reason)
					}
					if strings.Count(resp, "HTTP/1.1 ") != 1 {
						t.Fatalf("more than one response (smuggled request served): %q", resp)
					}
				})
			}
			// Lines ended by CRLF pass (and the request line may end in a
			// bare LF: fasthttp writes its own).
			for _, raw := range []string{
				"GET /ok HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n",
				"GET /ok HTTP/1.1\nHost: x\r\n\r\n",
			} {
				if resp := rawRequest(t, g.addr, strings.Replace(raw, "Host: x\r\n", "Host: x\r\nConnection: close\r\n", 1), 5*time.Second); statusOf(resp) != 200 {
					t.Fatalf("%q: got %q", raw, resp)
				}
				if got := up.take(); len(got) != 1 || got[0] != "GET /ok HTTP/1.1 host=x xfh=x" {
					t.Fatalf("%q: upstream saw %q", raw, got)
				}
			}
		})
	}
}

// TestHostAndTargetAuthority: a Host with userinfo, or an absolute-form
// target whose authority runs into a fragment, is refused with a reason
// naming what is wrong, and never reaches the upstream: fasthttp routes by
// the host it makes of them, while the upstream would get them as sent.
func TestHostAndTargetAuthority(t *testing.T) {
	up := startRecordingUpstream(t)
	g := startGateway(t, testConfig(t, []string{up.addr}, nil), nil, nil)
	for _, tc := range []struct{ raw, reason string }{
		{"GET /p HTTP/1.1\r\nHost: a<b@a.example\r\n\r\n", "Host must be"},
		{"GET /p HTTP/1.1\r\nHost: evil@a.example\r\n\r\n", "Host must be"},
		{"GET http://a.example#frag HTTP/1.1\r\nHost: a.example\r\n\r\n", "request target"},
		{"GET http://a<b@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n", "request target"},
	} {
		resp := rawRequest(t, g.addr, tc.raw, 5*time.Second)
		if statusOf(resp) != 400 || !strings.Contains(resp, tc.reason) {
			t.Errorf("%q: got %q, want a 400 saying %q", tc.raw, resp, tc.reason)
		}
		if got := up.take(); len(got) > 0 {
			t.Errorf("%q: upstream saw %q", tc.raw, got)
		}
	}
}

// pipelined sends reqs (raw requests) at once on one connection to addr and
// returns each answer as its status code, a space and its body.
func pipelined(t *testing.T, addr string, reqs []string) []string {
	t.Helper()
	c := dialGateway(t, addr, 10*time.Second)
	if _, err := io.WriteString(c, strings.Join(reqs, "")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	answers := make([]string, len(reqs))
	for i := range reqs {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answers[i] = fmt.Sprintf("%d %s", resp.StatusCode, body)
	}
	return answers
}

// Small request bodies (an MCP call's), which fasthttp reads whole with the
// header, are forwarded from memory on both paths: pipelined on one
// keep-alive connection, each request's own body reaches the upstream,
// whatever the size of the one before (the exchange's body buffer is
// reused), and the last one at the pre-read limit.
func TestSmallBodiesPipelined(t *testing.T) {
	verifyNone(t)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %q", r.URL.Path, r.Header.Get("X-Forwarded-For"), b)
	}))
	bodies := []string{`{"jsonrpc":"2.0","id":1}`, strings.Repeat("m", 3000), "x", strings.Repeat("L", 8<<10)}
	for path, g := range conformGateways(t, up.addr, nil) {
		t.Run(path, func(t *testing.T) {
			var reqs []string
			for i, b := range bodies {
				reqs = append(reqs, fmt.Sprintf("POST /p%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", i, len(b), b))
			}
			for i, got := range pipelined(t, g.addr, reqs) {
				if want := fmt.Sprintf("200 /p%d 127.0.0.1 %q", i, bodies[i]); got != want {
					t.Errorf("request %d: %.80q, want %.80q", i, got, want)
				}
			}
		})
	}
}

// A request with an empty body declared as such (Content-Length: 0, as
// net/http and curl send for an empty POST) goes upstream on both paths,
// pipelined with requests that carry a body. fasthttp hands such a request
// over with an empty body stream, which the in-place path forwarded as a
// stream: Stream refused to add the gateway's fields to it (502).
func TestEmptyBodyDeclared(t *testing.T) {
	verifyNone(t)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %d %v %q", r.Method, r.ContentLength, r.TransferEncoding, b)
	}))
	reqs := []struct{ raw, want string }{
		{"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", `POST 0 [] ""`},
		{"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", `PUT 0 [] ""`},
		{"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", `POST 2 [] "hi"`},
		{"DELETE /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", `DELETE 0 [] ""`},
		// Not on the short path (the gateway's own fields set, not appended).
		{"POST /a HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\nContent-Length: 0\r\n\r\n", `POST 0 [] ""`},
		{"POST /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", `POST 0 [] ""`},
	}
	for path, g := range conformGateways(t, up.addr, nil) {
		t.Run(path, func(t *testing.T) {
			raws := make([]string, len(reqs))
			for i, r := range reqs {
				raws[i] = r.raw
			}
			for i, got := range pipelined(t, g.addr, raws) {
				if want := "200 " + reqs[i].want; got != want {
					t.Errorf("request %d: %q, want %q", i, got, want)
				}
			}
			resp, err := newClient(t).Post("http://"+g.addr+"/a", "application/json", strings.NewReader(""))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(got) != `POST 0 [] ""` {
				t.Errorf("net/http empty POST: %d %q", resp.StatusCode, got)
			}
		})
	}
}

// An HTTP/1.0 request without Host (what a health probe or an old client
// sends) is not the upstream's failure: it never counts toward the
// target's passive ejection, and it gets an answer.
func TestHTTP10WithoutHost(t *testing.T) {
	verifyNone(t)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	for path, g := range conformGateways(t, up.addr, nil) {
		t.Run(path, func(t *testing.T) {
			for i := 0; i < 6; i++ { // passive_health.max_failures is 5
				raw := rawRequest(t, g.addr, "GET / HTTP/1.0\r\n\r\n", 5*time.Second)
				if statusOf(raw) != 400 || !strings.HasSuffix(raw, "Host is required\n") {
					t.Errorf("HTTP/1.0 without Host, request %d: %q, want 400 Host is required", i, raw)
				}
			}
			raw := rawRequest(t, g.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
			if statusOf(raw) != 200 {
				t.Fatalf("a good request after them: %.80q", raw)
			}
		})
	}
}
