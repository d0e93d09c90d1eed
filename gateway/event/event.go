// Package event is the seam between the proxy, which observes what happens
// in a session, and the recorder that persists it (package gateway/store).
//
// The proxy builds an [Event] and hands it to a [Sink]. The sink owns the
// event from then on: the proxy never touches it again, so a sink may queue
// it without copying. Record must return quickly and bounded: the proxy path
// never waits on a disk.
package event

import (
	"context"
	"time"
)

// Redacted is the value recorded in place of a redacted header's (the
// header names in sessions.redact).
const Redacted = "[redacted]"

// Type says what an Event records.
type Type uint8

// Event types. Their numeric values are part of the on-disk encoding: append
// new ones, never renumber.
const (
	SessionStart Type = 1
	Request      Type = 2
	Response     Type = 3
	SSE          Type = 4
	Plugin       Type = 5
	Error        Type = 6
	SessionEnd   Type = 7
)

var typeNames = [...]string{
	SessionStart: "session_start",
	Request:      "request",
	Response:     "response",
	SSE:          "sse_event",
	Plugin:       "plugin",
	Error:        "error",
	SessionEnd:   "session_end",
}

// String returns the name used in exports and the admin API ("sse_event").
func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return "unknown"
}

// ParseType is the inverse of Type.String.
func ParseType(s string) (Type, bool) {
	for i, n := range typeNames {
		if n == s && n != "" {
			return Type(i), true
		}
	}
	return 0, false
}

// Header is one recorded header field (values already redacted).
type Header struct {
	Name  string
	Value string
}

// Event is one thing that happened in a session. Which fields are set
// depends on Type; the rest stay zero.
type Event struct {
	Session string
	// Seq is assigned by the store: the event's position in its session.
	Seq  uint64
	Time time.Time
	Type Type

	Route     string
	RequestID string

	// Request (and Response: Method and Path of the request answered).
	Method  string
	Path    string
	Headers []Header
	// Body holds at most sessions.capture_body_bytes; BodyBytes is the
	// full size seen.
	Body      []byte
	BodyBytes int64

	// Response.
	Status  int
	Latency time.Duration

	// SSE event. Stream names the SSE stream within the session ("route
	// name" + " " + "request path"); replay matches on it.
	Stream    string
	EventID   string
	EventName string
	Data      []byte // at most the capture limit; BodyBytes holds the full size

	// Plugin decision: Plugin made Decision ("local_response", "drop",
	// "modify", "fail_open", "fail_closed").
	Plugin   string
	Decision string

	// Error and plugin details: a one-line reason.
	Message string
}

// Sink receives session events.
type Sink interface {
	// Record takes ownership of e. It returns false when the event was
	// shed (the recorder is full or closed); it never blocks for longer
	// than the recorder's enqueue timeout.
	Record(e *Event) bool
}

// Discard is a Sink that drops everything (recording disabled).
var Discard Sink = discard{}

type discard struct{}

func (discard) Record(*Event) bool { return true }

// Replayer reads back recorded SSE events for resume (sse.replay: gateway).
type Replayer interface {
	// SSEAfter calls fn, in order, for every recorded SSE event of session
	// and stream that came after the event with id lastEventID. found is
	// false when lastEventID is unknown (the caller then replays nothing).
	SSEAfter(ctx context.Context, session, stream, lastEventID string, fn func(*Event) error) (found bool, err error)
}
