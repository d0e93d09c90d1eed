package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/store"
)

const sessionsUsage = `usage:
  gateway sessions list [-config FILE] [-limit N] [-cursor C]   sessions, newest first
  gateway sessions show ID [-config FILE]                       one session, an event per line
  gateway sessions export ID [-config FILE] [-o FILE]           JSON lines, one event per line

The configuration file is the one the gateway runs with: the command asks
the admin API of the running gateway (admin.listen, admin.token), and when
none answers it opens the store at storage.path read-only.
`

func sessionsCmd(args []string) int { return sessionsMain(args, os.Stdout, os.Stderr) }

func sessionsMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "help" {
		fmt.Fprint(stderr, sessionsUsage)
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("sessions "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (as for run)")
	limit := fs.Int("limit", store.DefaultSessionsLimit, "list: sessions per page (1-1000)")
	cursor := fs.String("cursor", "", "list: page cursor printed by the previous page")
	out := fs.String("o", "", "export: write to this file instead of stdout")
	// Flags may come before or after the session id.
	var pos []string
	rest := args[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	wantIDs := map[string]int{"list": 0, "show": 1, "export": 1}
	n, known := wantIDs[sub]
	if !known {
		fmt.Fprintf(stderr, "gateway sessions: unknown subcommand %q\n%s", sub, sessionsUsage)
		return 2
	}
	if len(pos) != n {
		fmt.Fprintf(stderr, "gateway sessions %s: want %d argument(s), got %d\n%s", sub, n, len(pos), sessionsUsage)
		return 2
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, "gateway sessions:", err)
		return 1
	}
	src, err := openSessionSource(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "gateway sessions:", err)
		return 1
	}
	defer src.Close()
	switch sub {
	case "list":
		err = listSessions(src, stdout, *limit, *cursor)
	case "show":
		err = showSession(src, stdout, pos[0])
	case "export":
		w := stdout
		if *out != "" {
			f, ferr := os.Create(*out)
			if ferr != nil {
				fmt.Fprintln(stderr, "gateway sessions:", ferr)
				return 1
			}
			defer f.Close()
			w = f
		}
		if err = src.Export(w, pos[0]); errors.Is(err, errNoSession) {
			err = fmt.Errorf("%q: %w", pos[0], err)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "gateway sessions %s: %v\n", sub, err)
		return 1
	}
	return 0
}

var errNoSession = errors.New("session not recorded")

// sessionSource is where recorded sessions are read: the admin API of a
// running gateway or the store itself.
type sessionSource interface {
	List(limit int, cursor string) (store.SessionsPage, error)
	Session(id string) (store.SessionInfo, error)
	Events(id string, after uint64, limit int) (store.EventsPage, error)
	Export(w io.Writer, id string) error
	Close() error
}

func openSessionSource(cfg *config.Config) (sessionSource, error) {
	var adminErr error
	if cfg.Admin.Listen != "" {
		a := &adminSource{base: "http://" + dialable(cfg.Admin.Listen), token: cfg.Admin.Token,
			c: &http.Client{Timeout: 30 * time.Second}}
		adminErr = a.ping()
		if adminErr == nil {
			return a, nil
		}
		if !isNotListening(adminErr) {
			return nil, adminErr // a gateway answers but refuses: say why
		}
	}
	if !cfg.Storage.Enabled {
		return nil, fmt.Errorf("no gateway answers at admin.listen %q and storage.enabled is false", cfg.Admin.Listen)
	}
	if _, err := os.Stat(cfg.Storage.Path); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no gateway answers at admin.listen %q and there is no store at storage.path %s (nothing recorded yet?)",
			cfg.Admin.Listen, cfg.Storage.Path)
	}
	s, err := store.Open(cfg.Storage.Path, store.Options{ReadOnly: true})
	if err != nil {
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) || strings.Contains(err.Error(), "lock") {
			return nil, fmt.Errorf("store %s is locked by another process (a running gateway?) and no admin API answered at %q (%v); "+
				"Pebble locks the directory even for read-only opens: use the running gateway's admin API", cfg.Storage.Path, cfg.Admin.Listen, adminErr)
		}
		return nil, err
	}
	return storeSource{s}, nil
}

// dialable turns a listen address into one to dial ("0.0.0.0:9901" and
// ":9901" → 127.0.0.1:9901).
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func isNotListening(err error) bool {
	var op *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &op) && op.Op == "dial")
}

type adminSource struct {
	base, token string
	c           *http.Client
}

func (a *adminSource) ping() error {
	resp, err := a.c.Get(a.base + "/healthz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// get fetches path and returns the body of a 200; anything else is an
// error carrying the server's one-line reason.
func (a *adminSource) get(path string) (io.ReadCloser, error) {
	req, err := http.NewRequest("GET", a.base+path, nil)
	if err != nil {
		return nil, err
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp.Body, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode == http.StatusNotFound && strings.Contains(string(b), "not recorded") {
		return nil, errNoSession
	}
	return nil, fmt.Errorf("admin API %s: %s: %s", a.base, resp.Status, strings.TrimSpace(string(b)))
}

func (a *adminSource) getJSON(path string, v any) error {
	body, err := a.get(path)
	if err != nil {
		return err
	}
	defer body.Close()
	if err := json.NewDecoder(body).Decode(v); err != nil {
		return fmt.Errorf("admin API: decode %s: %w", path, err)
	}
	return nil
}

func (a *adminSource) List(limit int, cursor string) (p store.SessionsPage, err error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	return p, a.getJSON("/sessions?"+q.Encode(), &p)
}

func (a *adminSource) Session(id string) (info store.SessionInfo, err error) {
	return info, a.getJSON("/sessions/"+url.PathEscape(id), &info)
}

func (a *adminSource) Events(id string, after uint64, limit int) (p store.EventsPage, err error) {
	return p, a.getJSON(fmt.Sprintf("/sessions/%s/events?after=%d&limit=%d", url.PathEscape(id), after, limit), &p)
}

func (a *adminSource) Export(w io.Writer, id string) error {
	body, err := a.get("/sessions/" + url.PathEscape(id) + "/export")
	if err != nil {
		return err
	}
	defer body.Close()
	_, err = io.Copy(w, body)
	return err
}

func (a *adminSource) Close() error { a.c.CloseIdleConnections(); return nil }

type storeSource struct{ s *store.Store }

func (s storeSource) List(limit int, cursor string) (store.SessionsPage, error) {
	page, next, err := s.s.ListSessions(limit, cursor)
	return store.SessionsPage{Sessions: page, NextCursor: next}, err
}

func (s storeSource) Session(id string) (store.SessionInfo, error) {
	info, ok, err := s.s.Session(id)
	if err == nil && !ok {
		err = errNoSession
	}
	return info, err
}

func (s storeSource) Events(id string, after uint64, limit int) (store.EventsPage, error) {
	evs, err := s.s.Events(id, after, limit)
	page := store.EventsPage{Session: id}
	for _, e := range evs {
		page.Events = append(page.Events, store.ToJSON(e))
	}
	if len(evs) == limit {
		page.NextAfter = evs[len(evs)-1].Seq
	}
	return page, err
}

func (s storeSource) Export(w io.Writer, id string) error {
	if _, err := s.Session(id); err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	return forEachEvent(s, id, func(e store.JSONEvent) error { return enc.Encode(e) })
}

func (s storeSource) Close() error { return s.s.Close() }

func forEachEvent(src sessionSource, id string, fn func(store.JSONEvent) error) error {
	after := uint64(0)
	for {
		page, err := src.Events(id, after, store.DefaultEventsLimit)
		if err != nil {
			return err
		}
		for _, e := range page.Events {
			if err := fn(e); err != nil {
				return err
			}
		}
		if page.NextAfter == 0 {
			return nil
		}
		after = page.NextAfter
	}
}

func listSessions(src sessionSource, w io.Writer, limit int, cursor string) error {
	if limit < 1 || limit > store.MaxSessionsLimit {
		return fmt.Errorf("-limit %d: want 1 to %d", limit, store.MaxSessionsLimit)
	}
	page, err := src.List(limit, cursor)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tROUTE\tSTARTED\tLAST ACTIVITY\tEVENTS\tENDED")
	for _, s := range page.Sessions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%v\n", s.ID, s.Route,
			s.Start.Format(time.RFC3339), s.LastActivity.Format(time.RFC3339), s.Events, s.Ended)
	}
	tw.Flush()
	if page.NextCursor != "" {
		fmt.Fprintf(w, "more: gateway sessions list -limit %d -cursor %s\n", limit, page.NextCursor)
	}
	return nil
}

func showSession(src sessionSource, w io.Writer, id string) error {
	info, err := src.Session(id)
	if err != nil {
		return fmt.Errorf("%q: %w", id, err)
	}
	fmt.Fprintf(w, "session %s  route %s  started %s  last activity %s  %d events  ended %v\n",
		info.ID, info.Route, info.Start.Format(time.RFC3339Nano), info.LastActivity.Format(time.RFC3339Nano), info.Events, info.Ended)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	err = forEachEvent(src, id, func(e store.JSONEvent) error {
		_, err := fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", e.Seq, e.Time, e.Type, e.Summary())
		return err
	})
	tw.Flush()
	return err
}
