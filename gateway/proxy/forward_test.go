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
// parsed URI, and the Cookie field as it came (with recording off).
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
			if recording {
				sink = &memSink{}
			}
			table := session.NewTable(cfg.Sessions, cfg.SSE, sink, testLogger(), prometheus.NewRegistry())
			defer table.Close()
			g := startGateway(t, cfg, tableSessions{table}, sink)

			c, err := net.Dial("tcp", g.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			for _, raw := range []string{
				"GET /q/a//b/./c/../d?session=s1&x=%2f&y HTTP/1.1\r\nHost: x\r\n\r\n",
				"GET /c/a//b/../d?x=%2f HTTP/1.1\r\nHost: x\r\nCookie: sid=s2;b=2;  c\r\n\r\n",
			} {
				if _, err := io.WriteString(c, raw); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 {
					t.Fatalf("%q: %d %q", raw, resp.StatusCode, b)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			cookie := `"sid=s2;b=2;  c"`
			if recording {
				// Known: capturing the request event's fields with
				// RequestHeader.All parses the Cookie field, and Write
				// then sends it re-serialized.
				cookie = `"sid=s2; b=2; c"`
			}
			want := []string{
				`/q/a//b/./c/../d?session=s1&x=%2f&y cookie="" xff=1`,
				`/c/a//b/../d?x=%2f cookie=` + cookie + ` xff=1`,
			}
			if strings.Join(seen, "\n") != strings.Join(want, "\n") {
				t.Errorf("upstream saw\n%s\nwant\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}
