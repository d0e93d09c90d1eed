// Package sdk is the Go guest SDK for wasmgate plugins: proxy-wasm ABI
// v0.2.1 for standard Go (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared,
// //go:wasmexport and //go:wasmimport), written from the ABI specification.
//
// A plugin is a main package whose init calls [SetPlugin] with a [Plugin]
// (one per VM), which makes a [RootContext] per configuration, which makes
// an [HTTPContext] per request. Embed [DefaultPlugin], [DefaultRootContext]
// and [DefaultHTTPContext] and override only the callbacks you need:
//
//	func init() { sdk.SetPlugin(&plugin{}) }
//	func main() {}
//
// Functions that talk to the host (headers, bodies, properties, ...) act
// on the context whose callback is running, as the ABI defines.
//
// # SSE
//
// wasmgate delivers a text/event-stream response one complete event per
// OnResponseBody call. [ResponseEvent] parses it, [Event] edits it
// (keeping every byte you do not change), [SetResponseEvent] writes it back
// and [DropResponseEvent] removes it from the stream.
//
// # Memory
//
// In reactor mode Go's garbage collector only runs when the guest
// allocates, and its background work never runs between host calls, so a
// plugin's heap would grow with every request. Every [SetGCInterval]
// callbacks (default 256) the SDK reads the runtime's allocation counter and
// runs runtime.GC once [SetGCThreshold] bytes (default 1 MiB) were
// allocated since the last collection, which keeps linear memory flat; see
// gc_test.go for the measurement. A collection costs about the same
// whatever the garbage, so collecting by bytes rather than by call count
// makes a plugin that allocates little cheap (a forced collection every
// 1000 callbacks was ~0.5 µs of each call of the example). Reading the
// counter is not free either (about as much guest work as a whole request
// of the example), hence a check every 256 callbacks rather than every one,
// spreading out to every 4096 while the plugin allocates little.
//
// The package also builds for the host's GOOS so that pure helpers (header
// map serialization, SSE parsing) are unit-tested with `go test`; there the
// host functions return [StatusUnimplemented].
package sdk
