/* Exercises proxy_wasm.h for sdk/c_test.go: on request headers it reports
 * what the helpers computed as request headers. */
#define PROXY_WASM_IMPLEMENTATION
#include "proxy_wasm.h"

static uint8_t *cfg;
static size_t cfg_size;

PW_EXPORT(proxy_on_configure) uint32_t on_configure(uint32_t root, size_t size) {
  pw_bytes raw = {0};
  if (pw_get_buffer(PW_BUFFER_PLUGIN_CONFIGURATION, size, &raw) != PW_OK) return 0;
  cfg = raw.data;
  cfg_size = raw.size;
  return 1;
}

static void report(const char *name, const char *value) {
  pw_replace_header(PW_MAP_HTTP_REQUEST_HEADERS, name, value ? value : "(null)");
}

PW_EXPORT(proxy_on_request_headers) uint32_t on_request_headers(uint32_t id, size_t n, uint32_t eos) {
  const char *keys[] = {"plain", "escaped", "unicode", "nested", "number", "missing"};
  char name[32];
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    char *v = pw_json_string(cfg, cfg_size, keys[i]);
    strcpy(name, "x-json-");
    strcat(name, keys[i]);
    report(name, v);
    free(v);
  }
  /* round trip the request headers through the serialized map helpers */
  pw_bytes map = {0};
  if (proxy_get_header_map_pairs(PW_MAP_HTTP_REQUEST_HEADERS, &map.data, &map.size) == PW_OK) {
    const uint8_t *k, *v;
    size_t kl, vl, count = 0;
    while (pw_map_pair(map.data, map.size, count, &k, &kl, &v, &vl)) count++;
    char buf[16];
    buf[0] = (char)('0' + count % 10);
    buf[1] = 0;
    report("x-pairs", buf);
    if (pw_map_pair(map.data, map.size, 1, &k, &kl, &v, &vl)) {
      char pair[128] = {0};
      memcpy(pair, k, kl < 60 ? kl : 60);
      strcat(pair, "=");
      memcpy(pair + strlen(pair), v, vl < 60 ? vl : 60);
      report("x-second", pair);
    }
    report("x-bad-map", pw_map_pair(map.data, 3, 0, &k, &kl, &v, &vl) ? "accepted" : "refused");
  }
  pw_bytes_free(&map);
  pw_bytes sid = {0};
  if (pw_get_property("session.id", &sid) == PW_OK) {
    char s[64] = {0};
    memcpy(s, sid.data, sid.size < 63 ? sid.size : 63);
    report("x-session", s);
  }
  pw_bytes_free(&sid);
  return PW_CONTINUE;
}
