// Package event is the seam between the proxy, which observes what happens
// in a session, and the recorder that persists it (package gateway/store).
//
// The proxy builds an [Event] and hands it to a [Sink]. Record must return
// quickly and bounded: the proxy path never waits on a disk.
//
// # Ownership
//
// Record takes ownership of the event, whether it returns true or false:
// the producer never touches it again, nor anything its fields hold, so a
// sink may queue it without copying. The proxy records a few events per
// request; allocating each, with its header fields and a string of their
// bytes, made about 13 heap allocations per recorded request (against ~1.4
// for the rest of the request), garbage that sets how often the collector
// runs. So events are pooled (about 2 allocations per recorded request
// remain): a producer takes one from [New], copies what it records into the
// event's own storage ([Event.Keep], [Event.KeepString], [Event.AddHeader])
// and records it. The sink, once it has no further use for the event
// (the store: once the event is written, or given up), calls
// [Event.Release], which returns it to the pool: a bounded free list that,
// unlike a sync.Pool, keeps its events across garbage collections
// ([SetPoolLimit], [ReadPoolStats]). After that, the event
// and every string and slice its fields held may be reused by another
// event: neither the sink nor anyone it passed the event to (an OnCommit
// hook) may keep them. A sink that keeps events (a test's) simply never
// releases them. Release does nothing to an event that did not come from
// New, so producers may still record events they built themselves.
package event

import (
	"context"
	"time"
	"unsafe"
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

	// own holds the bytes copied in by Keep, KeepString and AddHeader.
	own []byte
	// state is where the event is: made by its producer (literal), or
	// from New and owned, or back in the pool.
	state uint8
}

// Event states (Event.state).
const (
	literal uint8 = iota // not from New: Release leaves it alone
	owned                // from New, not yet released
	pooled               // released, in the pool
)

// Bounds on what a released event may keep for reuse: an event that
// captured an outsized header block or body is left to the GC.
const (
	maxPooledBytes   = 16 << 10
	maxPooledHeaders = 128
)

// New returns an empty event from the pool. Its owner hands it back with
// Release; see the package documentation.
func New() *Event {
	e := getEvent()
	e.state = owned
	return e
}

// Release returns an event from New to the pool, which keeps it for reuse
// unless it is full or the event's storage grew past the reuse bounds (the
// collector then takes it). Only the event's owner calls it, once nothing
// refers to the event or to what its fields hold. It does nothing to an
// event that did not come from New, or was already released.
func (e *Event) Release() {
	if e == nil || e.state != owned {
		return
	}
	if !e.reset() {
		discardedEvents.Add(1)
		return
	}
	if !putEvent(e) {
		e.state = literal // left to the collector
	}
}

// reset empties an owned e for reuse, keeping its storage, and marks it
// pooled. If the storage grew past the reuse bounds it leaves e as it is,
// no longer owned, and returns false.
func (e *Event) reset() bool {
	if cap(e.own) > maxPooledBytes || cap(e.Headers) > maxPooledHeaders {
		e.state = literal
		return false
	}
	clear(e.Headers)
	*e = Event{Headers: e.Headers[:0], own: e.own[:0], state: pooled}
	return true
}

// Keep returns a copy of b held by e: valid as long as e is (for an event
// from New, until it is released).
func (e *Event) Keep(b []byte) []byte {
	n := len(e.own)
	e.own = append(e.own, b...)
	return e.own[n:len(e.own):len(e.own)]
}

// KeepString returns b's bytes as a string held by e, like Keep.
func (e *Event) KeepString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	k := e.Keep(b)
	// k is never written again: Keep only appends past it, and Release
	// lets the storage be reused only once nothing refers to it.
	return unsafe.String(&k[0], len(k))
}

// AddHeader appends a header field to e.Headers, its name and value held
// by e (KeepString).
func (e *Event) AddHeader(name, value []byte) {
	e.Headers = append(e.Headers, Header{Name: e.KeepString(name), Value: e.KeepString(value)})
}

// Sink receives session events.
type Sink interface {
	// Record takes ownership of e, also when it returns false (the event
	// was shed: the recorder is full or closed), and releases it once done
	// with it (see the package documentation). It never blocks for longer
	// than the recorder's enqueue timeout.
	Record(e *Event) bool
}

// Discard is a Sink that drops everything (recording disabled).
var Discard Sink = discard{}

type discard struct{}

func (discard) Record(e *Event) bool { e.Release(); return true }

// Replayer reads back recorded SSE events for resume (sse.replay: gateway).
type Replayer interface {
	// SSEAfter calls fn, in order, for every recorded SSE event of session
	// and stream that came after the event with id lastEventID. found is
	// false when lastEventID is unknown (the caller then replays nothing).
	SSEAfter(ctx context.Context, session, stream, lastEventID string, fn func(*Event) error) (found bool, err error)
}
