package store

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmgate/wasmgate/gateway/admin"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/event"
)

func TestAdminAPI(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	var evs []*event.Event
	for i := range 5 {
		id := fmt.Sprintf("sess-%d", i)
		evs = append(evs,
			&event.Event{Session: id, Type: event.SessionStart, Time: t0.Add(time.Duration(i) * time.Minute), Route: "r"},
			&event.Event{Session: id, Type: event.Request, Time: t0.Add(time.Duration(i)*time.Minute + 1), Method: "POST", Path: "/mcp", Body: []byte(`{"a":1}`)},
			&event.Event{Session: id, Type: event.SSE, Time: t0.Add(time.Duration(i)*time.Minute + 2), Stream: "r /mcp", EventID: "1", Data: []byte{0xff, 0xfe}},
		)
	}
	record(t, s, evs...)

	srv := admin.New(config.Admin{Listen: "127.0.0.1:0", Token: "tok"}, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	RegisterAdmin(srv, s, slog.New(slog.DiscardHandler))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	base := "http://" + srv.Addr()
	do := func(method, path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if code, _ := do("GET", "/sessions", ""); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d, want 401", code)
	}
	code, body := do("GET", "/sessions?limit=2", "tok")
	var sp SessionsPage
	if code != 200 || json.Unmarshal([]byte(body), &sp) != nil || len(sp.Sessions) != 2 || sp.Sessions[0].ID != "sess-4" || sp.NextCursor == "" {
		t.Fatalf("GET /sessions?limit=2: %d %s", code, body)
	}
	code, body = do("GET", "/sessions?limit=10&cursor="+sp.NextCursor, "tok")
	sp = SessionsPage{}
	if code != 200 || json.Unmarshal([]byte(body), &sp) != nil || len(sp.Sessions) != 3 || sp.Sessions[2].ID != "sess-0" || sp.NextCursor != "" {
		t.Fatalf("second page: %d %s", code, body)
	}

	code, body = do("GET", "/sessions/sess-2/events?limit=2", "tok")
	var ep EventsPage
	if code != 200 || json.Unmarshal([]byte(body), &ep) != nil || len(ep.Events) != 2 || ep.NextAfter != 2 {
		t.Fatalf("events page: %d %s", code, body)
	}
	if e := ep.Events[1]; e.Type != "request" || e.Body != `{"a":1}` || e.Time != "2026-11-26T10:02:00.000000001Z" || e.Session != "sess-2" {
		t.Fatalf("request event: %+v", e)
	}
	code, body = do("GET", "/sessions/sess-2/events?after=2", "tok")
	ep = EventsPage{}
	if code != 200 || json.Unmarshal([]byte(body), &ep) != nil || len(ep.Events) != 1 || ep.Events[0].DataBase64 != "//4=" || ep.NextAfter != 0 {
		t.Fatalf("last page: %d %s", code, body)
	}

	code, body = do("GET", "/sessions/sess-1/export", "tok")
	sc := bufio.NewScanner(strings.NewReader(body))
	var types []string
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		for _, k := range []string{"session", "seq", "time", "type"} {
			if _, ok := m[k]; !ok {
				t.Fatalf("export line %q lacks %s", sc.Text(), k)
			}
		}
		types = append(types, m["type"].(string))
	}
	if code != 200 || fmt.Sprint(types) != "[session_start request sse_event]" {
		t.Fatalf("export: %d %v", code, types)
	}

	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/sessions?limit=0", 400},
		{"GET", "/sessions?limit=x", 400},
		{"GET", "/sessions?cursor=ab!!", 400},
		{"GET", "/sessions/nope/events", 404},
		{"GET", "/sessions/nope", 404},
		{"GET", "/sessions/sess-1", 200},
		{"GET", "/sessions/sess-1/events?after=-1", 400},
		{"GET", "/sessions/sess-1/events?limit=100000", 400},
		{"DELETE", "/sessions/nope", 404},
		{"DELETE", "/sessions/sess-1", 204},
		{"GET", "/sessions/sess-1/events", 404},
		{"GET", "/sessions/sess-1/export", 404},
	} {
		if code, body := do(tc.method, tc.path, "tok"); code != tc.code {
			t.Errorf("%s %s: %d %q, want %d", tc.method, tc.path, code, body, tc.code)
		} else if code >= 400 && strings.Count(strings.TrimSpace(body), "\n") != 0 {
			t.Errorf("%s %s: reason is not one line: %q", tc.method, tc.path, body)
		}
	}
}
