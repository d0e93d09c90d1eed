/* Raw proxy-wasm ABI v0.2.1 declarations for the host's test guests,
 * written from the spec text. Test guests use this instead of an SDK so
 * that they exercise the ABI exactly. */
#include <stddef.h>
#include <stdint.h>

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

typedef uint32_t status_t;

IMPORT(proxy_log) status_t proxy_log(uint32_t level, const char *msg, size_t size);
IMPORT(proxy_get_log_level) status_t proxy_get_log_level(uint32_t *level);
IMPORT(proxy_get_current_time_nanoseconds) status_t proxy_get_current_time_nanoseconds(uint64_t *t);
IMPORT(proxy_set_tick_period_milliseconds) status_t proxy_set_tick_period_milliseconds(uint32_t ms);
IMPORT(proxy_set_effective_context) status_t proxy_set_effective_context(uint32_t id);
IMPORT(proxy_done) status_t proxy_done(void);
IMPORT(proxy_get_buffer_bytes) status_t proxy_get_buffer_bytes(uint32_t type, size_t start, size_t max, uint8_t **data, size_t *size);
IMPORT(proxy_set_buffer_bytes) status_t proxy_set_buffer_bytes(uint32_t type, size_t start, size_t size, const uint8_t *data, size_t data_size);
IMPORT(proxy_get_buffer_status) status_t proxy_get_buffer_status(uint32_t type, size_t *size, uint32_t *flags);
IMPORT(proxy_get_header_map_size) status_t proxy_get_header_map_size(uint32_t type, size_t *size);
IMPORT(proxy_get_header_map_pairs) status_t proxy_get_header_map_pairs(uint32_t type, uint8_t **data, size_t *size);
IMPORT(proxy_set_header_map_pairs) status_t proxy_set_header_map_pairs(uint32_t type, const uint8_t *data, size_t size);
IMPORT(proxy_get_header_map_value) status_t proxy_get_header_map_value(uint32_t type, const char *k, size_t ks, uint8_t **v, size_t *vs);
IMPORT(proxy_add_header_map_value) status_t proxy_add_header_map_value(uint32_t type, const char *k, size_t ks, const char *v, size_t vs);
IMPORT(proxy_replace_header_map_value) status_t proxy_replace_header_map_value(uint32_t type, const char *k, size_t ks, const char *v, size_t vs);
IMPORT(proxy_remove_header_map_value) status_t proxy_remove_header_map_value(uint32_t type, const char *k, size_t ks);
IMPORT(proxy_continue_stream) status_t proxy_continue_stream(uint32_t type);
IMPORT(proxy_close_stream) status_t proxy_close_stream(uint32_t type);
IMPORT(proxy_get_status) status_t proxy_get_status(uint32_t *code, uint8_t **msg, size_t *msg_size);
IMPORT(proxy_send_local_response) status_t proxy_send_local_response(uint32_t code, const char *det, size_t det_size,
    const uint8_t *body, size_t body_size, const uint8_t *hdrs, size_t hdrs_size, uint32_t grpc_status);
IMPORT(proxy_http_call) status_t proxy_http_call(const char *up, size_t up_size, const uint8_t *hdrs, size_t hdrs_size,
    const uint8_t *body, size_t body_size, const uint8_t *trailers, size_t trailers_size, uint32_t timeout_ms, uint32_t *call_id);
IMPORT(proxy_grpc_call) status_t proxy_grpc_call(const char *, size_t, const char *, size_t, const char *, size_t,
    const uint8_t *, size_t, const uint8_t *, size_t, uint32_t, uint32_t *);
IMPORT(proxy_grpc_stream) status_t proxy_grpc_stream(const char *, size_t, const char *, size_t, const char *, size_t,
    const uint8_t *, size_t, uint32_t *);
IMPORT(proxy_grpc_send) status_t proxy_grpc_send(uint32_t, const uint8_t *, size_t, uint32_t);
IMPORT(proxy_grpc_cancel) status_t proxy_grpc_cancel(uint32_t);
IMPORT(proxy_grpc_close) status_t proxy_grpc_close(uint32_t);
IMPORT(proxy_set_shared_data) status_t proxy_set_shared_data(const char *k, size_t ks, const uint8_t *v, size_t vs, uint32_t cas);
IMPORT(proxy_get_shared_data) status_t proxy_get_shared_data(const char *k, size_t ks, uint8_t **v, size_t *vs, uint32_t *cas);
IMPORT(proxy_register_shared_queue) status_t proxy_register_shared_queue(const char *n, size_t ns, uint32_t *id);
IMPORT(proxy_resolve_shared_queue) status_t proxy_resolve_shared_queue(const char *vm, size_t vms, const char *n, size_t ns, uint32_t *id);
IMPORT(proxy_enqueue_shared_queue) status_t proxy_enqueue_shared_queue(uint32_t id, const uint8_t *v, size_t vs);
IMPORT(proxy_dequeue_shared_queue) status_t proxy_dequeue_shared_queue(uint32_t id, uint8_t **v, size_t *vs);
IMPORT(proxy_define_metric) status_t proxy_define_metric(uint32_t type, const char *n, size_t ns, uint32_t *id);
IMPORT(proxy_record_metric) status_t proxy_record_metric(uint32_t id, uint64_t v);
IMPORT(proxy_increment_metric) status_t proxy_increment_metric(uint32_t id, int64_t d);
IMPORT(proxy_get_metric) status_t proxy_get_metric(uint32_t id, uint64_t *v);
IMPORT(proxy_get_property) status_t proxy_get_property(const char *p, size_t ps, uint8_t **v, size_t *vs);
IMPORT(proxy_set_property) status_t proxy_set_property(const char *p, size_t ps, const uint8_t *v, size_t vs);
IMPORT(proxy_call_foreign_function) status_t proxy_call_foreign_function(const char *n, size_t ns, const uint8_t *a, size_t as,
    uint8_t **r, size_t *rs);

enum { BUF_REQ_BODY = 0, BUF_RESP_BODY = 1, BUF_CALL_BODY = 4, BUF_VM_CONFIG = 6, BUF_PLUGIN_CONFIG = 7 };
enum { MAP_REQ = 0, MAP_REQ_TRAILERS = 1, MAP_RESP = 2, MAP_CALL = 6 };
enum { CONTINUE = 0, PAUSE = 1 };
