// Package chain is the seam between the proxy and whatever intercepts its
// traffic: the proxy calls a [Stream] at each phase of a request, and the
// Wasm plugin host (package wasmhost) implements it. The proxy never sees a
// plugin; the host never sees a fasthttp object.
//
// # Calling contract (what the proxy guarantees)
//
//   - One Stream per proxied request, created by [Chain.NewStream] before the
//     request headers are read by any plugin, ended by exactly one call to
//     [Stream.Done], whatever happened in between.
//   - Calls into one Stream come from one goroutine at a time and in order:
//     RequestHeaders, RequestBody*, ResponseHeaders, ResponseBody*. A phase
//     whose callback returned Respond is the last one called before Done.
//   - Header maps carry HTTP/2-style pseudo-headers first: ":method",
//     ":path", ":authority", ":scheme" on requests, ":status" on responses.
//     Names are lower case. Changes the Stream makes to the map are applied
//     to the forwarded message (changing ":path" rewrites the request path).
//   - Body calls pass a chunk in *body; the Stream may replace it. For a
//     text/event-stream response each ResponseBody call carries exactly one
//     complete event in its wire form (the lines and the blank line that ends
//     it, as the upstream sent them); what is left in *body is what the
//     client receives, and an empty *body drops the event. The stream ends
//     with a call whose endOfStream is true (its body may be empty).
//   - A Buffer result on a body call asks for the whole body so far: the
//     proxy accumulates chunks (bounded by limits.max_body_bytes; past it the
//     client gets 413) and the next call carries everything buffered. On the
//     final chunk Buffer is treated as Continue.
//
// # Implementation contract (what a Stream guarantees)
//
//   - A plugin that pauses (proxy-wasm Pause, waiting for proxy_continue_stream
//     from a tick or an HTTP callout) is resolved inside the call: the call
//     blocks, bounded by the plugin's pause_timeout, and then returns Continue
//     or Respond. The proxy has no "paused" state to manage.
//   - Plugin failures are resolved inside the call too: a fail_closed plugin
//     that traps yields Respond with a 500 naming the plugin; a fail_open one
//     yields Continue as if it were absent. Capacity exhaustion (no VM within
//     queue_timeout) yields Respond with 503 unless the plugin is fail_open.
//   - Calls never panic into the proxy and never block without a bound.
package chain

import (
	"net"
	"strings"
	"time"

	"github.com/wasmgate/wasmgate/gateway/config"
)

// Header is one header field. Name is lower case.
type Header struct {
	Name  string
	Value string
}

// Headers is an ordered header map that may hold repeated names.
type Headers []Header

// Get returns the first value of name (case-insensitive) and whether it was present.
func (h Headers) Get(name string) (string, bool) {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return f.Value, true
		}
	}
	return "", false
}

// Set replaces every field named name with one field holding value.
func (h *Headers) Set(name, value string) {
	h.Del(name)
	*h = append(*h, Header{Name: strings.ToLower(name), Value: value})
}

// Add appends a field.
func (h *Headers) Add(name, value string) {
	*h = append(*h, Header{Name: strings.ToLower(name), Value: value})
}

// Del removes every field named name.
func (h *Headers) Del(name string) {
	out := (*h)[:0]
	for _, f := range *h {
		if !strings.EqualFold(f.Name, name) {
			out = append(out, f)
		}
	}
	*h = out
}

// Action is what a Stream asks the proxy to do after a callback.
type Action uint8

const (
	// Continue forwards the (possibly modified) headers or chunk.
	Continue Action = iota
	// Buffer, on a body call, holds the chunk and asks for the whole body so
	// far on the next call. Treated as Continue on headers and on the last chunk.
	Buffer
	// Respond stops forwarding and answers the client with Result.Response.
	// On a response phase after the headers were sent to the client, the
	// proxy ends the stream instead (the status cannot change any more).
	Respond
)

func (a Action) String() string {
	switch a {
	case Continue:
		return "continue"
	case Buffer:
		return "buffer"
	case Respond:
		return "respond"
	}
	return "unknown"
}

// LocalResponse is a response made by the chain instead of the upstream.
type LocalResponse struct {
	Status  int
	Headers Headers
	Body    []byte
	// Details is a short reason for logs and session records
	// (proxy-wasm's details argument, or the failure that caused it).
	Details string
}

// Result is the outcome of one Stream callback.
type Result struct {
	Action Action
	// Response is set when Action is Respond.
	Response *LocalResponse
	// Plugin names the plugin that decided a Respond (for logs and the
	// session record), or "" when none did.
	Plugin string
}

// Info describes the request a Stream serves. The proxy fills it before
// NewStream; the host exposes it to plugins as properties. NewStream
// copies what it keeps: the proxy may reuse *info afterwards.
type Info struct {
	RequestID  string
	SessionID  string
	Route      string
	Upstream   string
	ClientAddr string // source.address, "ip:port"
	LocalAddr  string // destination.address
	Scheme     string // http or https
	Protocol   string // "HTTP/1.1"
	StartTime  time.Time
	// ClientNetAddr and LocalNetAddr stand in for an empty ClientAddr or
	// LocalAddr: the Stream formats them only if a plugin asks, which
	// keeps two address strings off every request.
	ClientNetAddr net.Addr
	LocalNetAddr  net.Addr
}

// Client is ClientAddr, or ClientNetAddr formatted.
func (i *Info) Client() string {
	if i.ClientAddr == "" && i.ClientNetAddr != nil {
		return i.ClientNetAddr.String()
	}
	return i.ClientAddr
}

// Local is LocalAddr, or LocalNetAddr formatted.
func (i *Info) Local() string {
	if i.LocalAddr == "" && i.LocalNetAddr != nil {
		return i.LocalNetAddr.String()
	}
	return i.LocalAddr
}

// Stream intercepts one request. See the package documentation for the
// calling and implementation contracts.
type Stream interface {
	RequestHeaders(h *Headers, endOfStream bool) Result
	RequestBody(body *[]byte, endOfStream bool) Result
	ResponseHeaders(h *Headers, endOfStream bool) Result
	ResponseBody(body *[]byte, endOfStream bool) Result
	// Done ends the stream: the host runs its log/done/delete callbacks and
	// releases the VM. Called exactly once.
	Done()
}

// Chain makes Streams for one route. It stays valid across plugin hot
// reloads: each NewStream uses the plugin versions current at that moment.
type Chain interface {
	// NewStream starts intercepting a request. An error means no stream
	// could be made at all (the proxy answers 503 with the error as reason);
	// plugin-level capacity and failure policies are handled by the Stream.
	NewStream(info *Info) (Stream, error)
	// Len is the number of plugins; a zero-length chain lets the proxy skip
	// header conversion entirely.
	Len() int
}

// Builder makes the Chain for a route from its plugin references.
type Builder interface {
	Build(route string, plugins []config.PluginRef) (Chain, error)
}

// Nop is the empty chain: every callback continues unchanged.
var Nop Chain = nop{}

type nop struct{}

func (nop) NewStream(*Info) (Stream, error) { return nopStream{}, nil }
func (nop) Len() int                        { return 0 }

type nopStream struct{}

func (nopStream) RequestHeaders(*Headers, bool) Result  { return Result{} }
func (nopStream) RequestBody(*[]byte, bool) Result      { return Result{} }
func (nopStream) ResponseHeaders(*Headers, bool) Result { return Result{} }
func (nopStream) ResponseBody(*[]byte, bool) Result     { return Result{} }
func (nopStream) Done()                                 {}

// NopBuilder builds Nop for every route; it refuses routes that name
// plugins, since it cannot run them.
type NopBuilder struct{}

// Build implements Builder.
func (NopBuilder) Build(route string, plugins []config.PluginRef) (Chain, error) {
	if len(plugins) > 0 {
		return nil, &NoHostError{Route: route}
	}
	return Nop, nil
}

// NoHostError reports a route with plugins but no plugin host.
type NoHostError struct{ Route string }

func (e *NoHostError) Error() string {
	return "route " + e.Route + " lists plugins but no plugin host is configured"
}
