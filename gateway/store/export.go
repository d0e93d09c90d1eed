package store

import (
	"encoding/base64"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/wasmgate/wasmgate/gateway/event"
)

// JSONEvent is the export form of an event, used by the admin API and
// `gateway sessions export` (one object per line). Which fields are set
// depends on Type, as in event.Event. Body and Data are strings when they
// are valid UTF-8, else body_base64 / data_base64.
type JSONEvent struct {
	Session    string       `json:"session"`
	Seq        uint64       `json:"seq"`
	Time       string       `json:"time"` // RFC 3339 with nanoseconds, UTC
	Type       string       `json:"type"` // session_start, request, response, sse_event, plugin, error, session_end
	Route      string       `json:"route,omitempty"`
	RequestID  string       `json:"request_id,omitempty"`
	Method     string       `json:"method,omitempty"`
	Path       string       `json:"path,omitempty"`
	Headers    []JSONHeader `json:"headers,omitempty"`
	Body       string       `json:"body,omitempty"`
	BodyBase64 string       `json:"body_base64,omitempty"`
	BodyBytes  int64        `json:"body_bytes,omitempty"`
	Status     int          `json:"status,omitempty"`
	LatencyMS  float64      `json:"latency_ms,omitempty"`
	Stream     string       `json:"stream,omitempty"`
	EventID    string       `json:"id,omitempty"`
	EventName  string       `json:"event,omitempty"`
	Data       string       `json:"data,omitempty"`
	DataBase64 string       `json:"data_base64,omitempty"`
	Plugin     string       `json:"plugin,omitempty"`
	Decision   string       `json:"decision,omitempty"`
	Message    string       `json:"message,omitempty"`
}

// JSONHeader is one recorded header.
type JSONHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// ToJSON converts an event to its export form.
func ToJSON(e *event.Event) JSONEvent {
	j := JSONEvent{
		Session: e.Session, Seq: e.Seq,
		Time: e.Time.UTC().Format(time.RFC3339Nano), Type: e.Type.String(),
		Route: e.Route, RequestID: e.RequestID, Method: e.Method, Path: e.Path,
		BodyBytes: e.BodyBytes, Status: e.Status,
		LatencyMS: float64(e.Latency) / float64(time.Millisecond),
		Stream:    e.Stream, EventID: e.EventID, EventName: e.EventName,
		Plugin: e.Plugin, Decision: e.Decision, Message: e.Message,
	}
	for _, h := range e.Headers {
		j.Headers = append(j.Headers, JSONHeader(h))
	}
	j.Body, j.BodyBase64 = textOrBase64(e.Body)
	j.Data, j.DataBase64 = textOrBase64(e.Data)
	return j
}

func textOrBase64(b []byte) (string, string) {
	if len(b) == 0 {
		return "", ""
	}
	if utf8.Valid(b) {
		return string(b), ""
	}
	return "", base64.StdEncoding.EncodeToString(b)
}

// Summary is a one-line human description (for `gateway sessions show`).
func (j JSONEvent) Summary() string {
	switch j.Type {
	case "request":
		return fmt.Sprintf("%s %s (%d body bytes)", j.Method, j.Path, j.BodyBytes)
	case "response":
		return fmt.Sprintf("%d for %s %s in %.3fms", j.Status, j.Method, j.Path, j.LatencyMS)
	case "sse_event":
		d := j.Data
		if len(d) > 60 {
			d = d[:60] + "…"
		}
		return fmt.Sprintf("id=%q event=%q %q", j.EventID, j.EventName, d)
	case "plugin":
		return fmt.Sprintf("%s: %s %s", j.Plugin, j.Decision, j.Message)
	case "session_start":
		return "route " + j.Route
	}
	return j.Message
}
