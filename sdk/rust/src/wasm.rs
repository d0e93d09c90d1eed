//! Host calls with Rust types, and the callbacks exported to the host.

use crate::hostcalls as h;
use crate::{Action, BufferType, HttpContext, LogLevel, MapType, MetricType, RootContext, Status, StreamType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ptr::null_mut;

fn check(st: u32) -> Result<(), Status> {
    if st == 0 {
        Ok(())
    } else {
        Err(Status(st))
    }
}

/// Copies a block the host allocated in our memory and frees it.
unsafe fn take(ptr: *mut u8, len: usize) -> Vec<u8> {
    if ptr.is_null() {
        return Vec::new();
    }
    let v = std::slice::from_raw_parts(ptr, len).to_vec();
    h::free(ptr);
    v
}

pub fn log(level: LogLevel, msg: &str) {
    unsafe { h::proxy_log(level as u32, msg.as_ptr(), msg.len()) };
}

/// Reads `max` bytes from `start` of a buffer.
pub fn get_buffer(t: BufferType, start: usize, max: usize) -> Result<Vec<u8>, Status> {
    let (mut p, mut n) = (null_mut(), 0usize);
    unsafe {
        check(h::proxy_get_buffer_bytes(t as u32, start, max, &mut p, &mut n))?;
        Ok(take(p, n))
    }
}

/// Replaces `size` bytes at `start` of a buffer with `data`.
pub fn set_buffer(t: BufferType, start: usize, size: usize, data: &[u8]) -> Result<(), Status> {
    unsafe { check(h::proxy_set_buffer_bytes(t as u32, start, size, data.as_ptr(), data.len())) }
}

/// The plugin configuration (in on_configure).
pub fn plugin_configuration(size: usize) -> Result<Vec<u8>, Status> {
    if size == 0 {
        return Ok(Vec::new());
    }
    get_buffer(BufferType::PluginConfiguration, 0, size)
}

/// The response body chunk (for SSE: one whole event).
pub fn response_body(size: usize) -> Result<Vec<u8>, Status> {
    get_buffer(BufferType::HttpResponseBody, 0, size)
}

/// Replaces the response body chunk of `size` bytes; empty drops an SSE event.
pub fn set_response_body(size: usize, data: &[u8]) -> Result<(), Status> {
    set_buffer(BufferType::HttpResponseBody, 0, size, data)
}

/// One header; Ok(None) when absent.
pub fn get_header(m: MapType, name: &str) -> Result<Option<Vec<u8>>, Status> {
    let (mut p, mut n) = (null_mut(), 0usize);
    match unsafe { h::proxy_get_header_map_value(m as u32, name.as_ptr(), name.len(), &mut p, &mut n) } {
        0 => Ok(Some(unsafe { take(p, n) })),
        1 => Ok(None),
        st => Err(Status(st)),
    }
}

pub fn add_header(m: MapType, name: &str, value: &str) -> Result<(), Status> {
    unsafe { check(h::proxy_add_header_map_value(m as u32, name.as_ptr(), name.len(), value.as_ptr(), value.len())) }
}

pub fn replace_header(m: MapType, name: &str, value: &str) -> Result<(), Status> {
    unsafe { check(h::proxy_replace_header_map_value(m as u32, name.as_ptr(), name.len(), value.as_ptr(), value.len())) }
}

pub fn remove_header(m: MapType, name: &str) -> Result<(), Status> {
    unsafe { check(h::proxy_remove_header_map_value(m as u32, name.as_ptr(), name.len())) }
}

/// All pairs of a map.
pub fn get_headers(m: MapType) -> Result<Vec<(String, String)>, Status> {
    let (mut p, mut n) = (null_mut(), 0usize);
    unsafe { check(h::proxy_get_header_map_pairs(m as u32, &mut p, &mut n))? };
    crate::map::deserialize(&unsafe { take(p, n) }).ok_or(Status::SERIALIZATION_FAILURE)
}

pub fn set_headers(m: MapType, pairs: &[(&str, &str)]) -> Result<(), Status> {
    let b = crate::map::serialize(pairs);
    unsafe { check(h::proxy_set_header_map_pairs(m as u32, b.as_ptr(), b.len())) }
}

/// Answers the client instead of the upstream; return Action::Pause after.
pub fn send_local_response(status: u32, headers: &[(&str, &str)], body: &[u8], details: &str) -> Result<(), Status> {
    let hs = crate::map::serialize(headers);
    unsafe {
        check(h::proxy_send_local_response(status, details.as_ptr(), details.len(), body.as_ptr(), body.len(), hs.as_ptr(), hs.len(), 0))
    }
}

pub fn continue_stream(t: StreamType) -> Result<(), Status> {
    unsafe { check(h::proxy_continue_stream(t as u32)) }
}

pub fn set_effective_context(id: u32) -> Result<(), Status> {
    unsafe { check(h::proxy_set_effective_context(id)) }
}

pub fn set_tick_period_ms(ms: u32) -> Result<(), Status> {
    unsafe { check(h::proxy_set_tick_period_milliseconds(ms)) }
}

/// A property by path segments, e.g. `&["session", "id"]` (sent NUL-joined,
/// retried dot-joined when the host does not know it).
pub fn get_property(path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
    for sep in ["\0", "."] {
        let p = path.join(sep);
        let (mut ptr, mut n) = (null_mut(), 0usize);
        match unsafe { h::proxy_get_property(p.as_ptr(), p.len(), &mut ptr, &mut n) } {
            0 => return Ok(Some(unsafe { take(ptr, n) })),
            1 => continue,
            st => return Err(Status(st)),
        }
    }
    Ok(None)
}

/// The gateway session id of the current request.
pub fn session_id() -> Option<String> {
    get_property(&["session", "id"]).ok().flatten().map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The route the current request matched.
pub fn route_name() -> Option<String> {
    get_property(&["route", "name"]).ok().flatten().map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub fn get_shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>, Status> {
    let (mut p, mut n, mut cas) = (null_mut(), 0usize, 0u32);
    match unsafe { h::proxy_get_shared_data(key.as_ptr(), key.len(), &mut p, &mut n, &mut cas) } {
        0 => Ok(Some((unsafe { take(p, n) }, cas))),
        1 => Ok(None),
        st => Err(Status(st)),
    }
}

pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
    unsafe { check(h::proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)) }
}

pub fn define_metric(t: MetricType, name: &str) -> Result<u32, Status> {
    let mut id = 0;
    unsafe { check(h::proxy_define_metric(t as u32, name.as_ptr(), name.len(), &mut id))? };
    Ok(id)
}

pub fn increment_metric(id: u32, delta: i64) -> Result<(), Status> {
    unsafe { check(h::proxy_increment_metric(id, delta)) }
}

pub fn record_metric(id: u32, value: u64) -> Result<(), Status> {
    unsafe { check(h::proxy_record_metric(id, value)) }
}

/// Sends an HTTP request to a gateway upstream; the response arrives in
/// RootContext-level code via proxy_on_http_call_response (not dispatched
/// by this thin layer beyond the call id).
pub fn http_call(upstream: &str, headers: &[(&str, &str)], body: &[u8], timeout_ms: u32) -> Result<u32, Status> {
    let hs = crate::map::serialize(headers);
    let mut id = 0;
    unsafe {
        check(h::proxy_http_call(upstream.as_ptr(), upstream.len(), hs.as_ptr(), hs.len(), body.as_ptr(), body.len(), std::ptr::null(), 0, timeout_ms, &mut id))?;
    }
    Ok(id)
}

// ---- dispatch -------------------------------------------------------------

extern "Rust" {
    fn __wasmgate_new_root(context_id: u32) -> Box<dyn RootContext>;
}

thread_local! {
    static ROOTS: RefCell<HashMap<u32, Box<dyn RootContext>>> = RefCell::new(HashMap::new());
    static STREAMS: RefCell<HashMap<u32, Box<dyn HttpContext>>> = RefCell::new(HashMap::new());
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    unsafe { h::malloc(if size == 0 { 1 } else { size }) }
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(id: u32, parent: u32) {
    if parent == 0 {
        let root = unsafe { __wasmgate_new_root(id) };
        ROOTS.with(|r| r.borrow_mut().insert(id, root));
        return;
    }
    let ctx = ROOTS.with(|r| r.borrow().get(&parent).and_then(|root| root.create_http_context(id)));
    if let Some(ctx) = ctx {
        STREAMS.with(|s| s.borrow_mut().insert(id, ctx));
    }
}

fn with_root<T>(id: u32, default: T, f: impl FnOnce(&mut dyn RootContext) -> T) -> T {
    ROOTS.with(|r| match r.borrow_mut().get_mut(&id) {
        Some(root) => f(root.as_mut()),
        None => default,
    })
}

fn with_stream(id: u32, f: impl FnOnce(&mut dyn HttpContext) -> Action) -> u32 {
    STREAMS.with(|s| match s.borrow_mut().get_mut(&id) {
        Some(ctx) => f(ctx.as_mut()) as u32,
        None => Action::Continue as u32,
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(id: u32, size: usize) -> u32 {
    with_root(id, false, |r| r.on_vm_start(size)) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(id: u32, size: usize) -> u32 {
    with_root(id, false, |r| r.on_configure(size)) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(id: u32) {
    with_root(id, (), |r| r.on_tick())
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(id: u32, n: usize, eos: u32) -> u32 {
    with_stream(id, |c| c.on_request_headers(n, eos != 0))
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(id: u32, size: usize, eos: u32) -> u32 {
    with_stream(id, |c| c.on_request_body(size, eos != 0))
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(id: u32, n: usize, eos: u32) -> u32 {
    with_stream(id, |c| c.on_response_headers(n, eos != 0))
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(id: u32, size: usize, eos: u32) -> u32 {
    with_stream(id, |c| c.on_response_body(size, eos != 0))
}

#[no_mangle]
pub extern "C" fn proxy_on_done(_id: u32) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_log(id: u32) {
    with_stream(id, |c| {
        c.on_log();
        Action::Continue
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(id: u32) {
    let ctx = STREAMS.with(|s| s.borrow_mut().remove(&id));
    match ctx {
        Some(mut c) => c.on_delete(),
        None => {
            ROOTS.with(|r| r.borrow_mut().remove(&id));
        }
    }
}
