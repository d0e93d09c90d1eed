/*
 * proxy_wasm.h — header-only C layer over the proxy-wasm ABI v0.2.1.
 *
 * Build a plugin as a WASI reactor:
 *   clang --target=wasm32-wasi -O2 -mexec-model=reactor -Wl,--strip-all \
 *         -I sdk/c -o plugin.wasm plugin.c
 *
 * In exactly one .c file, define PROXY_WASM_IMPLEMENTATION before including
 * this header: that translation unit then exports proxy_abi_version_0_2_1
 * and proxy_on_memory_allocate (libc malloc). The plugin itself exports the
 * proxy_on_* callbacks it handles with PW_EXPORT(name); every callback is
 * optional.
 *
 * Memory ownership: every pointer the host returns through a return_*
 * argument was allocated in this module by proxy_on_memory_allocate, so it
 * belongs to the plugin, which frees it with free(). The helpers below do
 * that for you where they copy; where they hand out a pw_bytes, call
 * pw_bytes_free.
 *
 * See sdk/ABI.md for the lifecycle and the SSE one-event-per-body-call rule.
 */
#ifndef PROXY_WASM_H
#define PROXY_WASM_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PW_EXPORT(name) __attribute__((export_name(#name)))
#define PW_IMPORT(name) __attribute__((import_module("env"), import_name(#name)))

/* ---- Types (spec section "Types") ---------------------------------- */

typedef enum {
  PW_OK = 0,
  PW_NOT_FOUND = 1,
  PW_BAD_ARGUMENT = 2,
  PW_SERIALIZATION_FAILURE = 3,
  PW_PARSE_FAILURE = 4,
  PW_INVALID_MEMORY_ACCESS = 6,
  PW_EMPTY = 7,
  PW_CAS_MISMATCH = 8,
  PW_INTERNAL_FAILURE = 10,
  PW_UNIMPLEMENTED = 12,
} pw_status;

typedef enum { PW_CONTINUE = 0, PW_PAUSE = 1 } pw_action;

typedef enum {
  PW_LOG_TRACE = 0,
  PW_LOG_DEBUG = 1,
  PW_LOG_INFO = 2,
  PW_LOG_WARN = 3,
  PW_LOG_ERROR = 4,
  PW_LOG_CRITICAL = 5,
} pw_log_level;

typedef enum {
  PW_BUFFER_HTTP_REQUEST_BODY = 0,
  PW_BUFFER_HTTP_RESPONSE_BODY = 1,
  PW_BUFFER_DOWNSTREAM_DATA = 2,
  PW_BUFFER_UPSTREAM_DATA = 3,
  PW_BUFFER_HTTP_CALL_RESPONSE_BODY = 4,
  PW_BUFFER_GRPC_CALL_MESSAGE = 5,
  PW_BUFFER_VM_CONFIGURATION = 6,
  PW_BUFFER_PLUGIN_CONFIGURATION = 7,
  PW_BUFFER_FOREIGN_FUNCTION_ARGUMENTS = 8,
} pw_buffer_type;

typedef enum {
  PW_MAP_HTTP_REQUEST_HEADERS = 0,
  PW_MAP_HTTP_REQUEST_TRAILERS = 1,
  PW_MAP_HTTP_RESPONSE_HEADERS = 2,
  PW_MAP_HTTP_RESPONSE_TRAILERS = 3,
  PW_MAP_GRPC_CALL_INITIAL_METADATA = 4,
  PW_MAP_GRPC_CALL_TRAILING_METADATA = 5,
  PW_MAP_HTTP_CALL_RESPONSE_HEADERS = 6,
  PW_MAP_HTTP_CALL_RESPONSE_TRAILERS = 7,
} pw_map_type;

typedef enum {
  PW_STREAM_HTTP_REQUEST = 0,
  PW_STREAM_HTTP_RESPONSE = 1,
  PW_STREAM_DOWNSTREAM = 2,
  PW_STREAM_UPSTREAM = 3,
} pw_stream_type;

typedef enum { PW_METRIC_COUNTER = 0, PW_METRIC_GAUGE = 1, PW_METRIC_HISTOGRAM = 2 } pw_metric_type;

/* ---- Host functions (module "env"), exactly as the spec lists them ---- */

PW_IMPORT(proxy_log) pw_status proxy_log(uint32_t level, const char *msg, size_t msg_size);
PW_IMPORT(proxy_get_log_level) pw_status proxy_get_log_level(uint32_t *return_level);
PW_IMPORT(proxy_get_current_time_nanoseconds) pw_status proxy_get_current_time_nanoseconds(uint64_t *return_time);
PW_IMPORT(proxy_set_tick_period_milliseconds) pw_status proxy_set_tick_period_milliseconds(uint32_t period);
PW_IMPORT(proxy_done) pw_status proxy_done(void);
PW_IMPORT(proxy_set_effective_context) pw_status proxy_set_effective_context(uint32_t context_id);

PW_IMPORT(proxy_get_buffer_bytes) pw_status proxy_get_buffer_bytes(uint32_t buffer, size_t start, size_t max_size, uint8_t **return_data, size_t *return_size);
PW_IMPORT(proxy_set_buffer_bytes) pw_status proxy_set_buffer_bytes(uint32_t buffer, size_t start, size_t size, const uint8_t *data, size_t data_size);
PW_IMPORT(proxy_get_buffer_status) pw_status proxy_get_buffer_status(uint32_t buffer, size_t *return_size, uint32_t *return_ignored);

PW_IMPORT(proxy_get_header_map_size) pw_status proxy_get_header_map_size(uint32_t map, size_t *return_size);
PW_IMPORT(proxy_get_header_map_pairs) pw_status proxy_get_header_map_pairs(uint32_t map, uint8_t **return_data, size_t *return_size);
PW_IMPORT(proxy_set_header_map_pairs) pw_status proxy_set_header_map_pairs(uint32_t map, const uint8_t *data, size_t size);
PW_IMPORT(proxy_get_header_map_value) pw_status proxy_get_header_map_value(uint32_t map, const char *key, size_t key_size, uint8_t **return_value, size_t *return_value_size);
PW_IMPORT(proxy_add_header_map_value) pw_status proxy_add_header_map_value(uint32_t map, const char *key, size_t key_size, const char *value, size_t value_size);
PW_IMPORT(proxy_replace_header_map_value) pw_status proxy_replace_header_map_value(uint32_t map, const char *key, size_t key_size, const char *value, size_t value_size);
PW_IMPORT(proxy_remove_header_map_value) pw_status proxy_remove_header_map_value(uint32_t map, const char *key, size_t key_size);

PW_IMPORT(proxy_continue_stream) pw_status proxy_continue_stream(uint32_t stream);
PW_IMPORT(proxy_close_stream) pw_status proxy_close_stream(uint32_t stream);
PW_IMPORT(proxy_get_status) pw_status proxy_get_status(uint32_t *return_code, uint8_t **return_msg, size_t *return_msg_size);

PW_IMPORT(proxy_send_local_response) pw_status proxy_send_local_response(uint32_t status_code, const char *details, size_t details_size, const uint8_t *body, size_t body_size, const uint8_t *headers, size_t headers_size, uint32_t grpc_status);

PW_IMPORT(proxy_http_call) pw_status proxy_http_call(const char *upstream, size_t upstream_size, const uint8_t *headers, size_t headers_size, const uint8_t *body, size_t body_size, const uint8_t *trailers, size_t trailers_size, uint32_t timeout_ms, uint32_t *return_call_id);

PW_IMPORT(proxy_set_shared_data) pw_status proxy_set_shared_data(const char *key, size_t key_size, const uint8_t *value, size_t value_size, uint32_t cas);
PW_IMPORT(proxy_get_shared_data) pw_status proxy_get_shared_data(const char *key, size_t key_size, uint8_t **return_value, size_t *return_value_size, uint32_t *return_cas);
PW_IMPORT(proxy_register_shared_queue) pw_status proxy_register_shared_queue(const char *name, size_t name_size, uint32_t *return_queue_id);
PW_IMPORT(proxy_resolve_shared_queue) pw_status proxy_resolve_shared_queue(const char *vm_id, size_t vm_id_size, const char *name, size_t name_size, uint32_t *return_queue_id);
PW_IMPORT(proxy_enqueue_shared_queue) pw_status proxy_enqueue_shared_queue(uint32_t queue_id, const uint8_t *value, size_t value_size);
PW_IMPORT(proxy_dequeue_shared_queue) pw_status proxy_dequeue_shared_queue(uint32_t queue_id, uint8_t **return_value, size_t *return_value_size);

PW_IMPORT(proxy_define_metric) pw_status proxy_define_metric(uint32_t type, const char *name, size_t name_size, uint32_t *return_metric_id);
PW_IMPORT(proxy_record_metric) pw_status proxy_record_metric(uint32_t metric_id, uint64_t value);
PW_IMPORT(proxy_increment_metric) pw_status proxy_increment_metric(uint32_t metric_id, int64_t delta);
PW_IMPORT(proxy_get_metric) pw_status proxy_get_metric(uint32_t metric_id, uint64_t *return_value);

PW_IMPORT(proxy_get_property) pw_status proxy_get_property(const char *path, size_t path_size, uint8_t **return_value, size_t *return_value_size);
PW_IMPORT(proxy_set_property) pw_status proxy_set_property(const char *path, size_t path_size, const uint8_t *value, size_t value_size);
PW_IMPORT(proxy_call_foreign_function) pw_status proxy_call_foreign_function(const char *name, size_t name_size, const uint8_t *args, size_t args_size, uint8_t **return_results, size_t *return_results_size);

/* ---- Owned byte strings ------------------------------------------------ */

/* pw_bytes is memory the host handed to the plugin; free with pw_bytes_free. */
typedef struct {
  uint8_t *data;
  size_t size;
} pw_bytes;

static inline void pw_bytes_free(pw_bytes *b) {
  free(b->data);
  b->data = NULL;
  b->size = 0;
}

/* pw_streq compares a byte string with a NUL-terminated one. */
static inline int pw_streq(const uint8_t *data, size_t size, const char *s) {
  size_t n = strlen(s);
  return size == n && memcmp(data, s, n) == 0;
}

/* ---- Logging ---------------------------------------------------------- */

static inline void pw_log(pw_log_level level, const char *msg) {
  proxy_log((uint32_t)level, msg, strlen(msg));
}

/* ---- Buffers ------------------------------------------------------------ */

/* pw_get_buffer reads a whole buffer (body, configuration, ...). */
static inline pw_status pw_get_buffer(pw_buffer_type type, size_t size, pw_bytes *out) {
  out->data = NULL;
  out->size = 0;
  if (size == 0) {
    uint32_t flags = 0;
    pw_status st = proxy_get_buffer_status(type, &size, &flags);
    if (st != PW_OK) return st;
    if (size == 0) return PW_OK;
  }
  return proxy_get_buffer_bytes(type, 0, size, &out->data, &out->size);
}

/* pw_set_buffer replaces a whole buffer of current size old_size; an empty
 * value empties it (for an SSE response body: drops the event). */
static inline pw_status pw_set_buffer(pw_buffer_type type, size_t old_size, const uint8_t *data, size_t size) {
  return proxy_set_buffer_bytes(type, 0, old_size, data, size);
}

/* ---- Header maps -------------------------------------------------------- */

/* pw_get_header returns the value of key in map, or PW_NOT_FOUND. */
static inline pw_status pw_get_header(pw_map_type map, const char *key, pw_bytes *out) {
  out->data = NULL;
  out->size = 0;
  return proxy_get_header_map_value(map, key, strlen(key), &out->data, &out->size);
}

static inline pw_status pw_add_header(pw_map_type map, const char *key, const char *value) {
  return proxy_add_header_map_value(map, key, strlen(key), value, strlen(value));
}

static inline pw_status pw_replace_header(pw_map_type map, const char *key, const char *value) {
  return proxy_replace_header_map_value(map, key, strlen(key), value, strlen(value));
}

static inline pw_status pw_remove_header(pw_map_type map, const char *key) {
  return proxy_remove_header_map_value(map, key, strlen(key));
}

/* Serialized maps: u32 count, then (u32 key len, u32 value len) per pair,
 * then each key and value followed by a NUL byte. Little-endian. */

static inline void pw__put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t pw__get32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* pw_map_size returns the serialized size of n pairs (kv[2i], kv[2i+1]). */
static inline size_t pw_map_size(const char *const *kv, size_t n) {
  size_t size = 4 + 8 * n;
  for (size_t i = 0; i < n; i++) size += strlen(kv[2 * i]) + 1 + strlen(kv[2 * i + 1]) + 1;
  return size;
}

/* pw_map_serialize writes n pairs into out, which holds pw_map_size bytes. */
static inline void pw_map_serialize(const char *const *kv, size_t n, uint8_t *out) {
  pw__put32(out, (uint32_t)n);
  uint8_t *lens = out + 4;
  uint8_t *p = out + 4 + 8 * n;
  for (size_t i = 0; i < n; i++) {
    size_t kl = strlen(kv[2 * i]), vl = strlen(kv[2 * i + 1]);
    pw__put32(lens + 8 * i, (uint32_t)kl);
    pw__put32(lens + 8 * i + 4, (uint32_t)vl);
    memcpy(p, kv[2 * i], kl);
    p += kl;
    *p++ = 0;
    memcpy(p, kv[2 * i + 1], vl);
    p += vl;
    *p++ = 0;
  }
}

/* pw_map_pair points key/value at pair i of a serialized map (no copy).
 * Returns 0 when i is out of range or the map is malformed. */
static inline int pw_map_pair(const uint8_t *map, size_t size, size_t i, const uint8_t **key, size_t *key_size,
                              const uint8_t **value, size_t *value_size) {
  if (size < 4) return 0;
  uint32_t n = pw__get32(map);
  if (i >= n || (size_t)n > (size - 4) / 8) return 0;
  size_t off = 4 + 8 * (size_t)n;
  for (size_t j = 0; j <= i; j++) {
    size_t kl = pw__get32(map + 4 + 8 * j), vl = pw__get32(map + 8 + 8 * j);
    if (off + kl + 1 + vl + 1 > size) return 0;
    if (j == i) {
      *key = map + off;
      *key_size = kl;
      *value = map + off + kl + 1;
      *value_size = vl;
      return 1;
    }
    off += kl + 1 + vl + 1;
  }
  return 0;
}

/* ---- Local responses ---------------------------------------------------- */

/* pw_send_response answers the client instead of the upstream. headers is
 * n (name, value) pairs; details is a short reason for the host's logs.
 * Return PW_PAUSE from the callback afterwards. */
static inline pw_status pw_send_response(uint32_t status, const char *details, const uint8_t *body, size_t body_size,
                                         const char *const *headers, size_t n) {
  size_t hs = pw_map_size(headers, n);
  uint8_t *h = (uint8_t *)malloc(hs);
  if (h == NULL) return PW_INTERNAL_FAILURE;
  pw_map_serialize(headers, n, h);
  pw_status st = proxy_send_local_response(status, details, strlen(details), body, body_size, h, hs, 0);
  free(h);
  return st;
}

/* ---- Properties ---------------------------------------------------------- */

/* pw_get_property reads a property by its dotted name ("session.id",
 * "route.name", "request.path"). On the wire a path is its segments joined
 * by NUL bytes. */
static inline pw_status pw_get_property(const char *dotted, pw_bytes *out) {
  size_t n = strlen(dotted);
  char *path = (char *)malloc(n + 1);
  if (path == NULL) return PW_INTERNAL_FAILURE;
  for (size_t i = 0; i < n; i++) path[i] = dotted[i] == '.' ? '\0' : dotted[i];
  out->data = NULL;
  out->size = 0;
  pw_status st = proxy_get_property(path, n, &out->data, &out->size);
  free(path);
  return st;
}

/* ---- JSON configuration --------------------------------------------------
 * pw_json_string finds the string member key of a flat JSON object and
 * copies its unescaped value into a new NUL-terminated string (free it).
 * Returns NULL when the member is absent or not a string. It understands
 * the escapes \" \\ \/ \b \f \n \r \t and \uXXXX below U+0080; it is meant
 * for small configuration objects, not as a general JSON parser. */
static inline char *pw_json_string(const uint8_t *json, size_t size, const char *key) {
  size_t kl = strlen(key);
  size_t i = 0;
  int depth = 0;
  while (i < size) {
    uint8_t c = json[i];
    if (c == '{' || c == '[') {
      depth++;
      i++;
      continue;
    }
    if (c == '}' || c == ']') {
      depth--;
      i++;
      continue;
    }
    if (c != '"') {
      i++;
      continue;
    }
    /* a string: read it, then see whether it is our key at depth 1 */
    size_t start = ++i;
    while (i < size && json[i] != '"') i += json[i] == '\\' ? 2 : 1;
    if (i >= size) return NULL;
    size_t end = i++;
    size_t j = i;
    while (j < size && (json[j] == ' ' || json[j] == '\t' || json[j] == '\n' || json[j] == '\r')) j++;
    int is_key = j < size && json[j] == ':';
    if (!is_key || depth != 1 || end - start != kl || memcmp(json + start, key, kl) != 0) continue;
    j++;
    while (j < size && (json[j] == ' ' || json[j] == '\t' || json[j] == '\n' || json[j] == '\r')) j++;
    if (j >= size || json[j] != '"') return NULL;
    j++;
    char *out = (char *)malloc(size - j + 1);
    if (out == NULL) return NULL;
    size_t o = 0;
    while (j < size && json[j] != '"') {
      uint8_t ch = json[j++];
      if (ch == '\\' && j < size) {
        uint8_t e = json[j++];
        switch (e) {
          case 'b': ch = '\b'; break;
          case 'f': ch = '\f'; break;
          case 'n': ch = '\n'; break;
          case 'r': ch = '\r'; break;
          case 't': ch = '\t'; break;
          case 'u': {
            unsigned v = 0;
            for (int k = 0; k < 4 && j < size; k++, j++) {
              uint8_t h = json[j];
              v = v * 16 + (h >= '0' && h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
            }
            ch = v < 0x80 ? (uint8_t)v : '?';
            break;
          }
          default: ch = e;
        }
      }
      out[o++] = (char)ch;
    }
    out[o] = 0;
    return out;
  }
  return NULL;
}

/* ---- SSE: one complete event per proxy_on_response_body call -------------
 * The host puts exactly one event (its wire bytes, including the blank line
 * that ends it) in HTTP_RESPONSE_BODY per call. Leave the buffer as is to
 * pass the event on unchanged, replace it to rewrite, empty it to drop. */

/* pw_sse_line_end returns the index just past the line starting at i (a
 * line ends at LF, CR or CRLF), and sets *content_end to its last content
 * byte + 1. */
static inline size_t pw_sse_line_end(const uint8_t *ev, size_t size, size_t i, size_t *content_end) {
  while (i < size && ev[i] != '\n' && ev[i] != '\r') i++;
  *content_end = i;
  if (i < size && ev[i] == '\r') i++;
  if (i < size && ev[i] == '\n' && (i == *content_end || ev[i - 1] == '\r')) i++;
  return i;
}

/* pw_sse_field splits the line [i, end) into field name and value (the
 * value skips one leading space). Returns 0 for a comment or empty line. */
static inline int pw_sse_field(const uint8_t *ev, size_t i, size_t end, size_t *name_end, size_t *value_start) {
  if (i == end || ev[i] == ':') return 0;
  size_t c = i;
  while (c < end && ev[c] != ':') c++;
  *name_end = c;
  if (c < end) c++;
  if (c < end && ev[c] == ' ') c++;
  *value_start = c;
  return 1;
}

/* pw_sse_event_name points *name at the event's last "event" field value
 * (size 0 when there is none, which means "message"). */
static inline void pw_sse_event_name(const uint8_t *ev, size_t size, const uint8_t **name, size_t *name_size) {
  *name = ev;
  *name_size = 0;
  size_t i = 0;
  while (i < size) {
    size_t end, ne, vs;
    size_t next = pw_sse_line_end(ev, size, i, &end);
    if (pw_sse_field(ev, i, end, &ne, &vs) && ne - i == 5 && memcmp(ev + i, "event", 5) == 0) {
      *name = ev + vs;
      *name_size = end - vs;
    }
    if (next == i) break;
    i = next;
  }
}

/* pw_sse_map_data calls fn on the value bytes of every "data" line, in
 * place; all other bytes stay as they are. */
static inline void pw_sse_map_data(uint8_t *ev, size_t size, void (*fn)(uint8_t *value, size_t n)) {
  size_t i = 0;
  while (i < size) {
    size_t end, ne, vs;
    size_t next = pw_sse_line_end(ev, size, i, &end);
    if (pw_sse_field(ev, i, end, &ne, &vs) && ne - i == 4 && memcmp(ev + i, "data", 4) == 0) fn(ev + vs, end - vs);
    if (next == i) break;
    i = next;
  }
}

/* ---- Runtime exports (one translation unit) ------------------------------ */
#ifdef PROXY_WASM_IMPLEMENTATION
PW_EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

/* The host allocates every return_* value with this; the plugin frees it. */
PW_EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t size) {
  return malloc(size == 0 ? 1 : size);
}
#endif

#endif /* PROXY_WASM_H */
