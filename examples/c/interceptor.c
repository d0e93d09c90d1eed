/* The example interceptor in C (see examples/README.md for the behaviour):
 * adds a response header, checks x-api-key, and rewrites SSE events. */
#define PROXY_WASM_IMPLEMENTATION
#include "proxy_wasm.h"

typedef struct config {
  char *header, *value, *api_key;
} config;

/* One node per context: a root context owns a config; an HTTP context
 * points at its root and remembers whether its response is SSE. */
typedef struct ctx {
  uint32_t id;
  struct ctx *root;
  config cfg;
  int sse;
  struct ctx *next;
} ctx;

static ctx *contexts;

static ctx *find(uint32_t id) {
  for (ctx *c = contexts; c != NULL; c = c->next)
    if (c->id == id) return c;
  return NULL;
}

static void config_free(config *c) {
  free(c->header);
  free(c->value);
  free(c->api_key);
  memset(c, 0, sizeof *c);
}

PW_EXPORT(proxy_on_context_create) void on_context_create(uint32_t id, uint32_t parent) {
  ctx *c = (ctx *)calloc(1, sizeof(ctx));
  if (c == NULL) return;
  c->id = id;
  c->root = parent ? find(parent) : NULL;
  c->next = contexts;
  contexts = c;
}

PW_EXPORT(proxy_on_delete) void on_delete(uint32_t id) {
  for (ctx **p = &contexts; *p != NULL; p = &(*p)->next) {
    if ((*p)->id == id) {
      ctx *c = *p;
      *p = c->next;
      config_free(&c->cfg);
      free(c);
      return;
    }
  }
}

PW_EXPORT(proxy_on_configure) uint32_t on_configure(uint32_t root_id, size_t size) {
  ctx *c = find(root_id);
  if (c == NULL) return 0;
  config_free(&c->cfg);
  pw_bytes raw = {0};
  if (size > 0 && pw_get_buffer(PW_BUFFER_PLUGIN_CONFIGURATION, size, &raw) != PW_OK) return 0;
  c->cfg.header = pw_json_string(raw.data, raw.size, "header");
  for (char *h = c->cfg.header; h != NULL && *h; h++)
    if (*h >= 'A' && *h <= 'Z') *h += 'a' - 'A'; /* header names are lower case */
  c->cfg.value = pw_json_string(raw.data, raw.size, "value");
  c->cfg.api_key = pw_json_string(raw.data, raw.size, "api_key");
  pw_bytes_free(&raw);
  return 1;
}

static config *config_of(uint32_t http_id) {
  ctx *c = find(http_id);
  return c != NULL && c->root != NULL ? &c->root->cfg : NULL;
}

PW_EXPORT(proxy_on_request_headers) uint32_t on_request_headers(uint32_t id, size_t n, uint32_t eos) {
  config *cfg = config_of(id);
  if (cfg == NULL || cfg->api_key == NULL || cfg->api_key[0] == 0) return PW_CONTINUE;
  pw_bytes got = {0};
  int ok = pw_get_header(PW_MAP_HTTP_REQUEST_HEADERS, "x-api-key", &got) == PW_OK &&
           pw_streq(got.data, got.size, cfg->api_key);
  pw_bytes_free(&got);
  if (ok) return PW_CONTINUE;
  static const char body[] = "{\"error\":\"invalid or missing x-api-key\"}";
  const char *headers[4] = {"content-type", "application/json", cfg->header ? cfg->header : "", cfg->value ? cfg->value : ""};
  pw_send_response(401, "api_key_mismatch", (const uint8_t *)body, sizeof body - 1, headers, cfg->header ? 2 : 1);
  return PW_PAUSE;
}

PW_EXPORT(proxy_on_response_headers) uint32_t on_response_headers(uint32_t id, size_t n, uint32_t eos) {
  ctx *c = find(id);
  config *cfg = config_of(id);
  if (c == NULL || cfg == NULL) return PW_CONTINUE;
  if (cfg->header != NULL && cfg->header[0] != 0) pw_replace_header(PW_MAP_HTTP_RESPONSE_HEADERS, cfg->header, cfg->value ? cfg->value : "");
  pw_bytes ct = {0};
  if (pw_get_header(PW_MAP_HTTP_RESPONSE_HEADERS, "content-type", &ct) == PW_OK)
    c->sse = ct.size >= 17 && memcmp(ct.data, "text/event-stream", 17) == 0;
  pw_bytes_free(&ct);
  return PW_CONTINUE;
}

static void upper(uint8_t *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (v[i] >= 'a' && v[i] <= 'z') v[i] -= 'a' - 'A';
}

PW_EXPORT(proxy_on_response_body) uint32_t on_response_body(uint32_t id, size_t size, uint32_t eos) {
  ctx *c = find(id);
  if (c == NULL || !c->sse || size == 0) return PW_CONTINUE;
  pw_bytes ev = {0};
  if (pw_get_buffer(PW_BUFFER_HTTP_RESPONSE_BODY, size, &ev) != PW_OK) return PW_CONTINUE;
  const uint8_t *name;
  size_t name_size;
  pw_sse_event_name(ev.data, ev.size, &name, &name_size);
  if (pw_streq(name, name_size, "drop")) {
    pw_set_buffer(PW_BUFFER_HTTP_RESPONSE_BODY, ev.size, NULL, 0);
  } else if (pw_streq(name, name_size, "shout")) {
    pw_sse_map_data(ev.data, ev.size, upper);
    pw_set_buffer(PW_BUFFER_HTTP_RESPONSE_BODY, ev.size, ev.data, ev.size);
  }
  pw_bytes_free(&ev);
  return PW_CONTINUE;
}
