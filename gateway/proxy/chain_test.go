package proxy_test

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/wasmgate/wasmgate/gateway/chain"
)

// editChain applies req and resp to the header maps; on the response it
// also records the request map it sees then (it must still be the request's).
type editChain struct {
	req, resp func(*chain.Headers)

	mu          sync.Mutex
	reqAtResp   chain.Headers
	reqAtReq    chain.Headers
	clientAddrs []string
}

func (c *editChain) Len() int { return 1 }
func (c *editChain) NewStream(info *chain.Info) (chain.Stream, error) {
	c.mu.Lock()
	c.clientAddrs = append(c.clientAddrs, info.Client())
	c.mu.Unlock()
	return &editStream{c: c}, nil
}

type editStream struct {
	c   *editChain
	req *chain.Headers
}

func (s *editStream) RequestHeaders(h *chain.Headers, _ bool) chain.Result {
	s.req = h
	if s.c.req != nil {
		s.c.req(h)
	}
	s.c.mu.Lock()
	s.c.reqAtReq = append(chain.Headers(nil), (*h)...)
	s.c.mu.Unlock()
	return chain.Result{}
}
func (s *editStream) RequestBody(*[]byte, bool) chain.Result { return chain.Result{} }
func (s *editStream) ResponseHeaders(h *chain.Headers, _ bool) chain.Result {
	s.c.mu.Lock()
	s.c.reqAtResp = append(chain.Headers(nil), (*s.req)...)
	s.c.mu.Unlock()
	if s.c.resp != nil {
		s.c.resp(h)
	}
	return chain.Result{}
}
func (s *editStream) ResponseBody(*[]byte, bool) chain.Result { return chain.Result{} }
func (s *editStream) Done()                                   {}

// TestChainHeaderEdits: whatever a chain does to the header maps (nothing,
// add, replace, remove, pseudo-headers) reaches the upstream and the
// client, and the request map a stream was given is still the request's
// when the response headers arrive.
func TestChainHeaderEdits(t *testing.T) {
	verifyNone(t)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Up-Path", r.URL.RequestURI())
		w.Header().Set("X-Up-Method", r.Method)
		w.Header().Set("X-Up-In", strings.Join(r.Header.Values("X-In"), ","))
		w.Header().Set("X-Up-Added", r.Header.Get("X-Added"))
		w.Header().Set("X-Up-Agent", r.Header.Get("User-Agent"))
		w.Header().Set("X-Resp", "up")
		io.WriteString(w, "ok")
	}))
	cases := []struct {
		name      string
		req, resp func(*chain.Headers)
		status    int
		want      map[string]string // client response headers
	}{
		{"untouched", nil, nil, 200, map[string]string{
			"X-Up-Path": "/p?q=1", "X-Up-Method": "GET", "X-Up-In": "a", "X-Up-Added": "", "X-Up-Agent": "t", "X-Resp": "up"}},
		{"added", func(h *chain.Headers) { h.Add("x-added", "1") }, func(h *chain.Headers) { h.Add("x-out", "2") }, 200, map[string]string{
			"X-Up-In": "a", "X-Up-Added": "1", "X-Out": "2", "X-Resp": "up"}},
		{"replaced", func(h *chain.Headers) { h.Set("x-in", "b") }, func(h *chain.Headers) { h.Set("x-resp", "plugin") }, 200, map[string]string{
			"X-Up-In": "b", "X-Resp": "plugin", "X-Up-Agent": "t"}},
		{"removed", func(h *chain.Headers) { h.Del("x-in"); h.Del("user-agent") }, func(h *chain.Headers) { h.Del("x-resp") }, 200, map[string]string{
			"X-Up-In": "", "X-Resp": "", "X-Up-Agent": ""}},
		{"appended pseudo", func(h *chain.Headers) { h.Add(":path", "/other"); h.Add(":method", "POST") },
			func(h *chain.Headers) { h.Add(":status", "203") }, 203, map[string]string{"X-Up-Path": "/other", "X-Up-Method": "POST"}},
		{"replaced pseudo", func(h *chain.Headers) { h.Set(":path", "/set") }, func(h *chain.Headers) { h.Set(":status", "202") }, 202,
			map[string]string{"X-Up-Path": "/set", "X-Up-In": "a"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ch := &editChain{req: tc.req, resp: tc.resp}
			g := startGatewayChains(t, testConfig(t, []string{up.addr}, nil), map[string]chain.Chain{"r": ch})
			req, _ := http.NewRequest("GET", "http://"+g.addr+"/p?q=1", nil)
			req.Header.Set("X-In", "a")
			req.Header.Set("User-Agent", "t")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || string(body) != "ok" {
				t.Fatalf("status %d body %q, want %d ok", resp.StatusCode, body, tc.status)
			}
			for k, v := range tc.want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q (all: %v)", k, got, v, resp.Header)
				}
			}
			ch.mu.Lock()
			defer ch.mu.Unlock()
			if len(ch.reqAtResp) != len(ch.reqAtReq) {
				t.Fatalf("request map changed under the stream: %v, was %v", ch.reqAtResp, ch.reqAtReq)
			}
			for i := range ch.reqAtReq {
				if ch.reqAtResp[i] != ch.reqAtReq[i] {
					t.Fatalf("request map changed under the stream: %v, was %v", ch.reqAtResp, ch.reqAtReq)
				}
			}
			if len(ch.clientAddrs) != 1 || !strings.HasPrefix(ch.clientAddrs[0], "127.0.0.1:") {
				t.Fatalf("client address %v", ch.clientAddrs)
			}
		})
	}
}
