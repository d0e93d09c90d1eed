package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/wasmgate/wasmgate/gateway/event"
)

// Registrar is where admin handlers go (admin.Server implements it).
type Registrar interface {
	Handle(pattern string, h http.Handler, auth bool)
}

// Paging limits of the admin API.
const (
	DefaultSessionsLimit = 100
	MaxSessionsLimit     = 1000
	DefaultEventsLimit   = 1000
	MaxEventsLimit       = 10000
)

// exportWriteWindow is how long an export may take to write the next 512
// events.
const exportWriteWindow = time.Minute

// SessionsPage is the answer of GET /sessions.
type SessionsPage struct {
	Sessions []SessionInfo `json:"sessions"`
	// NextCursor, when set, fetches the next (older) page: ?cursor=...
	NextCursor string `json:"next_cursor,omitempty"`
}

// EventsPage is the answer of GET /sessions/{id}/events.
type EventsPage struct {
	Session string      `json:"session"`
	Events  []JSONEvent `json:"events"`
	// NextAfter, when set, fetches the next page: ?after=N.
	NextAfter uint64 `json:"next_after,omitempty"`
}

// RegisterAdmin registers the session endpoints, all behind the admin
// token (they reveal or delete recorded traffic):
//
//	GET    /sessions                 ?limit=&cursor=  newest first
//	GET    /sessions/{id}            one session's SessionInfo
//	GET    /sessions/{id}/events     ?after=&limit=   in seq order
//	GET    /sessions/{id}/export     JSON lines, the whole session
//	DELETE /sessions/{id}
func RegisterAdmin(r Registrar, s *Store, log *slog.Logger) {
	a := &adminAPI{s: s, log: log}
	r.Handle("GET /sessions", http.HandlerFunc(a.list), true)
	r.Handle("GET /sessions/{id}", http.HandlerFunc(a.session), true)
	r.Handle("GET /sessions/{id}/events", http.HandlerFunc(a.events), true)
	r.Handle("GET /sessions/{id}/export", http.HandlerFunc(a.export), true)
	r.Handle("DELETE /sessions/{id}", http.HandlerFunc(a.delete), true)
}

type adminAPI struct {
	s   *Store
	log *slog.Logger
}

func (a *adminAPI) fail(w http.ResponseWriter, r *http.Request, code int, err error) {
	if code >= 500 {
		a.log.Error("admin sessions request failed", "path", r.URL.Path, "err", err)
	} else {
		a.log.Info("admin sessions request refused", "path", r.URL.Path, "status", code, "reason", err.Error())
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, err.Error())
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func intParam(r *http.Request, name string, def, max uint64) (uint64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || (max > 0 && (n == 0 || n > max)) {
		if max > 0 {
			return 0, fmt.Errorf("%s: want an integer from 1 to %d, got %q", name, max, v)
		}
		return 0, fmt.Errorf("%s: want a non-negative integer, got %q", name, v)
	}
	return n, nil
}

func (a *adminAPI) list(w http.ResponseWriter, r *http.Request) {
	limit, err := intParam(r, "limit", DefaultSessionsLimit, MaxSessionsLimit)
	if err != nil {
		a.fail(w, r, http.StatusBadRequest, err)
		return
	}
	page, next, err := a.s.ListSessions(int(limit), r.URL.Query().Get("cursor"))
	if errors.Is(err, ErrBadCursor) {
		a.fail(w, r, http.StatusBadRequest, errors.New("cursor: not one this gateway issued"))
		return
	}
	if err != nil {
		a.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	if page == nil {
		page = []SessionInfo{}
	}
	writeJSON(w, SessionsPage{Sessions: page, NextCursor: next})
}

// known answers 404 for a session the store does not hold.
func (a *adminAPI) known(w http.ResponseWriter, r *http.Request, id string) bool {
	_, ok, err := a.s.Session(id)
	if err != nil {
		a.fail(w, r, http.StatusInternalServerError, err)
		return false
	}
	if !ok {
		a.fail(w, r, http.StatusNotFound, fmt.Errorf("session %q not recorded", id))
		return false
	}
	return true
}

func (a *adminAPI) session(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	info, ok, err := a.s.Session(id)
	if err != nil {
		a.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	if !ok {
		a.fail(w, r, http.StatusNotFound, fmt.Errorf("session %q not recorded", id))
		return
	}
	writeJSON(w, info)
}

func (a *adminAPI) events(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	after, err := intParam(r, "after", 0, 0)
	if err != nil {
		a.fail(w, r, http.StatusBadRequest, err)
		return
	}
	limit, err := intParam(r, "limit", DefaultEventsLimit, MaxEventsLimit)
	if err != nil {
		a.fail(w, r, http.StatusBadRequest, err)
		return
	}
	if !a.known(w, r, id) {
		return
	}
	evs, err := a.s.Events(id, after, int(limit))
	if err != nil {
		a.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	page := EventsPage{Session: id, Events: make([]JSONEvent, 0, len(evs))}
	for _, e := range evs {
		page.Events = append(page.Events, ToJSON(e))
	}
	if len(evs) == int(limit) {
		page.NextAfter = evs[len(evs)-1].Seq
	}
	writeJSON(w, page)
}

func (a *adminAPI) export(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !a.known(w, r, id) {
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	// A long session outlasts the admin listener's write timeout: push the
	// deadline forward as the export makes progress.
	rc := http.NewResponseController(w)
	n := 0
	err := a.s.scan(r.Context(), id, 0, func(e *event.Event) (bool, error) {
		if n++; n%512 == 1 {
			_ = rc.SetWriteDeadline(time.Now().Add(exportWriteWindow))
		}
		return true, enc.Encode(ToJSON(e))
	})
	if err != nil {
		// Headers are gone; the truncated stream is all the client sees.
		a.log.Warn("session export cut short", "session", id, "err", err)
	}
}

func (a *adminAPI) delete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	found, err := a.s.DeleteSession(id)
	if err != nil {
		a.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	if !found {
		a.fail(w, r, http.StatusNotFound, fmt.Errorf("session %q not recorded", id))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
