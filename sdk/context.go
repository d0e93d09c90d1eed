package sdk

// Plugin is the VM-level part of a plugin: one per module instance.
type Plugin interface {
	// OnVMStart is called once with the size of the VM configuration
	// (read it with VMConfig). Returning false fails the plugin's start.
	OnVMStart(vmConfigSize int) bool
	// NewRootContext makes the context for one plugin configuration.
	NewRootContext(contextID uint32) RootContext
}

// RootContext holds one configuration of the plugin and makes the HTTP
// contexts of the requests that use it.
type RootContext interface {
	// OnConfigure is called with the size of the plugin configuration
	// (read it with PluginConfig or UnmarshalPluginConfig). Returning false
	// rejects the configuration.
	OnConfigure(configSize int) bool
	// OnTick runs every SetTickPeriod.
	OnTick()
	// OnDone is called when the host shuts the root context down; return
	// false to finish later with Done.
	OnDone() bool
	// NewHTTPContext makes the context for one request.
	NewHTTPContext(contextID uint32) HTTPContext
}

// HTTPContext intercepts one request/response pair.
type HTTPContext interface {
	OnRequestHeaders(numHeaders int, endOfStream bool) Action
	OnRequestBody(bodySize int, endOfStream bool) Action
	OnRequestTrailers(numTrailers int) Action
	OnResponseHeaders(numHeaders int, endOfStream bool) Action
	// OnResponseBody is called per body chunk; for an SSE response, once
	// per complete event (see ResponseEvent).
	OnResponseBody(bodySize int, endOfStream bool) Action
	OnResponseTrailers(numTrailers int) Action
	// OnLog runs after the stream is done; headers are still readable.
	OnLog()
	// OnDelete is the last call: forget the context.
	OnDelete()
}

// DefaultPlugin accepts any VM configuration and makes DefaultRootContexts.
type DefaultPlugin struct{}

// OnVMStart implements Plugin.
func (DefaultPlugin) OnVMStart(int) bool { return true }

// NewRootContext implements Plugin.
func (DefaultPlugin) NewRootContext(uint32) RootContext { return &DefaultRootContext{} }

// DefaultRootContext accepts any configuration and intercepts nothing.
type DefaultRootContext struct{}

// OnConfigure implements RootContext.
func (*DefaultRootContext) OnConfigure(int) bool { return true }

// OnTick implements RootContext.
func (*DefaultRootContext) OnTick() {}

// OnDone implements RootContext.
func (*DefaultRootContext) OnDone() bool { return true }

// NewHTTPContext implements RootContext.
func (*DefaultRootContext) NewHTTPContext(uint32) HTTPContext { return nil }

// DefaultHTTPContext continues every phase.
type DefaultHTTPContext struct{}

// OnRequestHeaders implements HTTPContext.
func (*DefaultHTTPContext) OnRequestHeaders(int, bool) Action { return Continue }

// OnRequestBody implements HTTPContext.
func (*DefaultHTTPContext) OnRequestBody(int, bool) Action { return Continue }

// OnRequestTrailers implements HTTPContext.
func (*DefaultHTTPContext) OnRequestTrailers(int) Action { return Continue }

// OnResponseHeaders implements HTTPContext.
func (*DefaultHTTPContext) OnResponseHeaders(int, bool) Action { return Continue }

// OnResponseBody implements HTTPContext.
func (*DefaultHTTPContext) OnResponseBody(int, bool) Action { return Continue }

// OnResponseTrailers implements HTTPContext.
func (*DefaultHTTPContext) OnResponseTrailers(int) Action { return Continue }

// OnLog implements HTTPContext.
func (*DefaultHTTPContext) OnLog() {}

// OnDelete implements HTTPContext.
func (*DefaultHTTPContext) OnDelete() {}
