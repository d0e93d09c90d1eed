//! A thin, std-only Rust layer over the proxy-wasm ABI v0.2.1 for wasmgate
//! plugins (see sdk/ABI.md). Build a plugin as a `cdylib` for
//! `wasm32-wasi` as a reactor (internal/wasmbuild/rust.go shows the flags:
//! link `crt1-reactor.o`, export `_initialize`).
//!
//! A plugin implements [`RootContext`] (one per configuration) and
//! [`HttpContext`] (one per request) and names its root constructor with
//! [`plugin!`]. This crate exports `proxy_abi_version_0_2_1`,
//! `proxy_on_memory_allocate` (libc `malloc`) and the callbacks, and
//! dispatches them to your contexts.
//!
//! SSE: wasmgate calls `on_response_body` once per complete event of a
//! `text/event-stream` response; [`sse::Event`] reads and edits it,
//! [`set_response_body`] writes it back, an empty body drops it.

pub mod json;
pub mod map;
pub mod sse;

#[cfg(target_arch = "wasm32")]
pub mod hostcalls;
#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "wasm32")]
pub use wasm::*;

/// A proxy_status_t other than OK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u32);

impl Status {
    pub const NOT_FOUND: Status = Status(1);
    pub const BAD_ARGUMENT: Status = Status(2);
    pub const SERIALIZATION_FAILURE: Status = Status(3);
    pub const PARSE_FAILURE: Status = Status(4);
    pub const INVALID_MEMORY_ACCESS: Status = Status(6);
    pub const EMPTY: Status = Status(7);
    pub const CAS_MISMATCH: Status = Status(8);
    pub const INTERNAL_FAILURE: Status = Status(10);
    pub const UNIMPLEMENTED: Status = Status(12);
}

/// What a callback asks the host to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Action {
    Continue = 0,
    Pause = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum BufferType {
    HttpRequestBody = 0,
    HttpResponseBody = 1,
    DownstreamData = 2,
    UpstreamData = 3,
    HttpCallResponseBody = 4,
    GrpcCallMessage = 5,
    VmConfiguration = 6,
    PluginConfiguration = 7,
    ForeignFunctionArguments = 8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MapType {
    HttpRequestHeaders = 0,
    HttpRequestTrailers = 1,
    HttpResponseHeaders = 2,
    HttpResponseTrailers = 3,
    GrpcCallInitialMetadata = 4,
    GrpcCallTrailingMetadata = 5,
    HttpCallResponseHeaders = 6,
    HttpCallResponseTrailers = 7,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum StreamType {
    HttpRequest = 0,
    HttpResponse = 1,
    Downstream = 2,
    Upstream = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MetricType {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

/// One configuration of the plugin; makes the contexts of its requests.
pub trait RootContext {
    /// Called with the size of the VM configuration; false fails the start.
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        true
    }
    /// Called with the size of the plugin configuration (JSON); false
    /// rejects it.
    fn on_configure(&mut self, _configuration_size: usize) -> bool {
        true
    }
    fn on_tick(&mut self) {}
    /// Makes the context of one request; None leaves it alone.
    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>>;
}

/// One request/response pair. Every callback defaults to Continue.
pub trait HttpContext {
    fn on_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    fn on_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    fn on_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    /// For an SSE response, called once per complete event.
    fn on_response_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    fn on_log(&mut self) {}
    fn on_delete(&mut self) {}
}

/// Names the function that makes a root context:
/// `wasmgate_sdk::plugin!(|id| Box::new(MyRoot::new()));`
#[macro_export]
macro_rules! plugin {
    ($new_root:expr) => {
        #[no_mangle]
        pub fn __wasmgate_new_root(context_id: u32) -> Box<dyn $crate::RootContext> {
            let f: fn(u32) -> Box<dyn $crate::RootContext> = $new_root;
            f(context_id)
        }
    };
}
