//! Raw host functions of proxy-wasm v0.2.1 (module "env"), exactly as the
//! specification lists them. Every function returns a status; values come
//! back through the `ret_*` pointers, allocated by the host with
//! `proxy_on_memory_allocate` (libc malloc), owned by the plugin.

#[link(wasm_import_module = "env")]
extern "C" {
    pub fn proxy_log(level: u32, msg: *const u8, size: usize) -> u32;
    pub fn proxy_get_log_level(ret: *mut u32) -> u32;
    pub fn proxy_get_current_time_nanoseconds(ret: *mut u64) -> u32;
    pub fn proxy_set_tick_period_milliseconds(ms: u32) -> u32;
    pub fn proxy_set_effective_context(id: u32) -> u32;
    pub fn proxy_done() -> u32;
    pub fn proxy_get_buffer_bytes(t: u32, start: usize, max: usize, ret_data: *mut *mut u8, ret_size: *mut usize) -> u32;
    pub fn proxy_set_buffer_bytes(t: u32, start: usize, size: usize, data: *const u8, data_size: usize) -> u32;
    pub fn proxy_get_buffer_status(t: u32, ret_size: *mut usize, ret_flags: *mut u32) -> u32;
    pub fn proxy_get_header_map_pairs(t: u32, ret_data: *mut *mut u8, ret_size: *mut usize) -> u32;
    pub fn proxy_set_header_map_pairs(t: u32, data: *const u8, size: usize) -> u32;
    pub fn proxy_get_header_map_value(t: u32, key: *const u8, key_size: usize, ret_data: *mut *mut u8, ret_size: *mut usize) -> u32;
    pub fn proxy_add_header_map_value(t: u32, key: *const u8, key_size: usize, val: *const u8, val_size: usize) -> u32;
    pub fn proxy_replace_header_map_value(t: u32, key: *const u8, key_size: usize, val: *const u8, val_size: usize) -> u32;
    pub fn proxy_remove_header_map_value(t: u32, key: *const u8, key_size: usize) -> u32;
    pub fn proxy_continue_stream(t: u32) -> u32;
    pub fn proxy_close_stream(t: u32) -> u32;
    pub fn proxy_send_local_response(status: u32, details: *const u8, details_size: usize, body: *const u8, body_size: usize, headers: *const u8, headers_size: usize, grpc_status: i32) -> u32;
    pub fn proxy_http_call(upstream: *const u8, upstream_size: usize, headers: *const u8, headers_size: usize, body: *const u8, body_size: usize, trailers: *const u8, trailers_size: usize, timeout_ms: u32, ret_id: *mut u32) -> u32;
    pub fn proxy_set_shared_data(key: *const u8, key_size: usize, val: *const u8, val_size: usize, cas: u32) -> u32;
    pub fn proxy_get_shared_data(key: *const u8, key_size: usize, ret_data: *mut *mut u8, ret_size: *mut usize, ret_cas: *mut u32) -> u32;
    pub fn proxy_define_metric(t: u32, name: *const u8, name_size: usize, ret_id: *mut u32) -> u32;
    pub fn proxy_increment_metric(id: u32, delta: i64) -> u32;
    pub fn proxy_record_metric(id: u32, value: u64) -> u32;
    pub fn proxy_get_metric(id: u32, ret: *mut u64) -> u32;
    pub fn proxy_get_property(path: *const u8, path_size: usize, ret_data: *mut *mut u8, ret_size: *mut usize) -> u32;
    pub fn proxy_set_property(path: *const u8, path_size: usize, val: *const u8, val_size: usize) -> u32;
}

extern "C" {
    pub fn malloc(size: usize) -> *mut u8;
    pub fn free(ptr: *mut u8);
}
