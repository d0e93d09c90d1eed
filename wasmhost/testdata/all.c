/* all.c: a test guest that exercises every host function the gateway
 * serves. What it does on a request is chosen by the "x-test" request
 * header; the host tests check the effects. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "abi.h"

#define S(lit) lit, sizeof(lit) - 1

EXPORT(proxy_abi_version_0_2_1) void abi_marker(void) {}
EXPORT(proxy_on_memory_allocate) void *on_alloc(size_t n) { return malloc(n); }

static uint32_t counter_id, gauge_id, hist_id, queue_id, root_id;
static char vm_config[64];
static size_t vm_config_len;

/* per-stream state, by context id */
#define MAXCTX 4096
static char saved_in[MAXCTX][64];
static uint8_t paused_tick[MAXCTX];
static uint8_t defer_done[MAXCTX]; /* 1: on_done returns false; 2: tick calls proxy_done */
static uint32_t call_ctx[MAXCTX]; /* http call id -> stream context */

static void log_str(uint32_t lvl, const char *s) { proxy_log(lvl, s, strlen(s)); }

static int get_header(uint32_t map, const char *k, char *out, size_t cap) {
  uint8_t *v = 0;
  size_t n = 0;
  if (proxy_get_header_map_value(map, k, strlen(k), &v, &n) != 0) return -1;
  if (n >= cap) n = cap - 1;
  memcpy(out, v, n);
  out[n] = 0;
  free(v);
  return (int)n;
}

static void add_header(uint32_t map, const char *k, const char *v) {
  proxy_add_header_map_value(map, k, strlen(k), v, strlen(v));
}

static int get_prop(const char *path, size_t plen, char *out, size_t cap) {
  uint8_t *v = 0;
  size_t n = 0;
  if (proxy_get_property(path, plen, &v, &n) != 0) return -1;
  if (n >= cap) n = cap - 1;
  memcpy(out, v, n);
  out[n] = 0;
  free(v);
  return (int)n;
}

EXPORT(proxy_on_vm_start) int on_vm_start(uint32_t root, size_t size) {
  uint8_t *d = 0;
  size_t n = 0;
  if (size > 0 && proxy_get_buffer_bytes(BUF_VM_CONFIG, 0, size, &d, &n) == 0) {
    vm_config_len = n < sizeof(vm_config) ? n : sizeof(vm_config) - 1;
    memcpy(vm_config, d, vm_config_len);
    free(d);
  }
  if (strstr(vm_config, "refuse")) return 0;
  return 1;
}

EXPORT(proxy_on_configure) int on_configure(uint32_t root, size_t size) {
  uint8_t *d = 0;
  size_t n = 0;
  char cfg[128] = {0};
  if (size > 0 && proxy_get_buffer_bytes(BUF_PLUGIN_CONFIG, 0, size, &d, &n) == 0) {
    memcpy(cfg, d, n < sizeof(cfg) - 1 ? n : sizeof(cfg) - 1);
    free(d);
  }
  if (strstr(cfg, "refuse")) return 0;
  root_id = root;
  proxy_define_metric(0, S("requests"), &counter_id);
  proxy_define_metric(1, S("last_len"), &gauge_id);
  proxy_define_metric(2, S("sizes"), &hist_id);
  proxy_register_shared_queue(S("jobs"), &queue_id);
  if (strstr(cfg, "tick")) proxy_set_tick_period_milliseconds(5);
  /* remember the per-root configuration in shared data for the test */
  char key[32];
  snprintf(key, sizeof key, "cfg-%u", root);
  proxy_set_shared_data(key, strlen(key), (const uint8_t *)cfg, strlen(cfg), 0);
  return 1;
}

EXPORT(proxy_on_context_create) void on_context_create(uint32_t id, uint32_t parent) {
  if (parent != 0 && id < MAXCTX) {
    saved_in[id][0] = 0;
    paused_tick[id] = 0;
    defer_done[id] = 0;
  }
}

static void do_props(void) {
  char v[256], h[300];
  static const struct { const char *name; const char *path; size_t len; } props[] = {
      {"x-p-path", S("request\0path")},       {"x-p-method", S("request\0method")},
      {"x-p-host", S("request\0host")},       {"x-p-id", S("request\0id")},
      {"x-p-plugin", S("plugin_name")},       {"x-p-vm", S("plugin_vm_id")},
      {"x-p-route", S("route\0name")},        {"x-p-session", S("session\0id")},
      {"x-p-upstream", S("upstream\0name")},  {"x-p-source", S("source\0address")},
      {"x-p-dest", S("destination\0address")}, {"x-p-proto", S("request\0protocol")},
      {"x-p-ua", S("request\0headers\0user-agent")},
  };
  for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++) {
    if (get_prop(props[i].path, props[i].len, v, sizeof v) >= 0) add_header(MAP_REQ, props[i].name, v);
  }
  uint8_t *t = 0;
  size_t n = 0;
  if (proxy_get_property(S("request\0time"), &t, &n) == 0 && n == 8) {
    uint64_t ns;
    memcpy(&ns, t, 8);
    snprintf(h, sizeof h, "%d", ns > 0);
    add_header(MAP_REQ, "x-p-time", h);
    free(t);
  }
  if (proxy_get_property(S("no\0such"), &t, &n) == 1) add_header(MAP_REQ, "x-p-missing", "notfound");
  proxy_set_property(S("my\0prop"), (const uint8_t *)"mine", 4);
  if (get_prop(S("my\0prop"), v, sizeof v) >= 0) add_header(MAP_REQ, "x-p-mine", v);
}

static void do_shared(void) {
  for (int attempt = 0; attempt < 100; attempt++) {
    uint8_t *v = 0;
    size_t n = 0;
    uint32_t cas = 0;
    long cur = 0;
    if (proxy_get_shared_data(S("count"), &v, &n, &cas) == 0) {
      char buf[32] = {0};
      memcpy(buf, v, n < 31 ? n : 31);
      cur = atol(buf);
      free(v);
    }
    char out[32];
    snprintf(out, sizeof out, "%ld", cur + 1);
    status_t st = proxy_set_shared_data(S("count"), (const uint8_t *)out, strlen(out), cas);
    if (st == 0) {
      add_header(MAP_REQ, "x-shared", out);
      return;
    }
  }
}

static void do_metric(void) {
  proxy_increment_metric(counter_id, 1);
  proxy_record_metric(gauge_id, 42);
  proxy_record_metric(hist_id, 7);
  uint64_t v = 0;
  char buf[32];
  proxy_get_metric(counter_id, &v);
  snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
  add_header(MAP_REQ, "x-metric", buf);
  uint32_t bad = 0;
  snprintf(buf, sizeof buf, "%u", proxy_increment_metric(counter_id, -1));
  add_header(MAP_REQ, "x-metric-dec", buf);
  (void)bad;
}

static void do_misc(void) {
  char buf[64];
  uint32_t lvl = 99;
  proxy_get_log_level(&lvl);
  snprintf(buf, sizeof buf, "%u", lvl);
  add_header(MAP_REQ, "x-loglevel", buf);
  uint64_t now = 0;
  proxy_get_current_time_nanoseconds(&now);
  snprintf(buf, sizeof buf, "%d", now > 1600000000000000000ull);
  add_header(MAP_REQ, "x-time-ok", buf);
  uint8_t *r = 0;
  size_t n = 0;
  if (proxy_call_foreign_function(S("echo"), (const uint8_t *)"ping", 4, &r, &n) == 0) {
    snprintf(buf, sizeof buf, "%.*s", (int)n, r);
    add_header(MAP_REQ, "x-foreign", buf);
    free(r);
  }
  snprintf(buf, sizeof buf, "%u", proxy_call_foreign_function(S("nope"), 0, 0, &r, &n));
  add_header(MAP_REQ, "x-foreign-missing", buf);
  uint32_t id = 0;
  snprintf(buf, sizeof buf, "%u", proxy_grpc_call(S("x"), S("s"), S("m"), 0, 0, 0, 0, 1000, &id));
  add_header(MAP_REQ, "x-grpc", buf);
  snprintf(buf, sizeof buf, "%u", proxy_continue_stream(2));
  add_header(MAP_REQ, "x-tcp", buf);
  /* WASI: no environment, no files */
  add_header(MAP_REQ, "x-env", getenv("HOME") || getenv("PATH") ? "visible" : "none");
  FILE *f = fopen("/etc/passwd", "r");
  add_header(MAP_REQ, "x-file", f ? "readable" : "none");
  if (f) fclose(f);
  log_str(2, "misc done");
  printf("stdout line from guest\n");
  fflush(stdout);
}

static void do_maps(void) {
  /* round trip all pairs, then replace/remove individual headers */
  uint8_t *pairs = 0;
  size_t n = 0, size = 0;
  proxy_get_header_map_size(MAP_REQ, &size);
  proxy_get_header_map_pairs(MAP_REQ, &pairs, &n);
  char buf[64];
  snprintf(buf, sizeof buf, "%d", size == n);
  proxy_set_header_map_pairs(MAP_REQ, pairs, n);
  free(pairs);
  add_header(MAP_REQ, "x-size-match", buf);
  proxy_replace_header_map_value(MAP_REQ, S("x-replace"), S("new"));
  proxy_remove_header_map_value(MAP_REQ, S("x-remove"));
}

static void do_queue(void) {
  uint32_t id = 0;
  if (proxy_resolve_shared_queue(S("all"), S("jobs"), &id) == 0) {
    proxy_enqueue_shared_queue(id, (const uint8_t *)"job-1", 5);
  }
  if (proxy_resolve_shared_queue(S("all"), S("nope"), &id) == 1) add_header(MAP_REQ, "x-queue-missing", "1");
}

EXPORT(proxy_on_queue_ready) void on_queue_ready(uint32_t root, uint32_t qid) {
  uint8_t *v = 0;
  size_t n = 0;
  while (proxy_dequeue_shared_queue(qid, &v, &n) == 0) {
    proxy_set_shared_data(S("dequeued"), v, n, 0);
    free(v);
  }
}

static int do_httpcall(uint32_t ctx, const char *authority) {
  /* serialized map: 3 pairs */
  const char *kv[][2] = {{":method", "GET"}, {":path", "/callout"}, {":authority", authority}};
  uint8_t buf[256];
  uint32_t *p = (uint32_t *)buf;
  p[0] = 3;
  size_t off = 4 + 3 * 8;
  for (int i = 0; i < 3; i++) {
    p[1 + 2 * i] = strlen(kv[i][0]);
    p[2 + 2 * i] = strlen(kv[i][1]);
  }
  for (int i = 0; i < 3; i++) {
    memcpy(buf + off, kv[i][0], strlen(kv[i][0]) + 1);
    off += strlen(kv[i][0]) + 1;
    memcpy(buf + off, kv[i][1], strlen(kv[i][1]) + 1);
    off += strlen(kv[i][1]) + 1;
  }
  uint32_t id = 0;
  status_t st = proxy_http_call(S(""), buf, off, (const uint8_t *)"q", 1, 0, 0, 2000, &id);
  if (st != 0) {
    char ret[16];
    snprintf(ret, sizeof ret, "%u", st);
    add_header(MAP_REQ, "x-call-ret", ret);
    return CONTINUE;
  }
  if (id < MAXCTX) call_ctx[id] = ctx;
  return PAUSE;
}

EXPORT(proxy_on_http_call_response) void on_http_call_response(uint32_t root, uint32_t id, size_t nh, size_t bs, size_t nt) {
  uint32_t ctx = id < MAXCTX ? call_ctx[id] : 0;
  char status[16] = "failed", body[64] = {0};
  if (nh > 0) get_header(MAP_CALL, ":status", status, sizeof status);
  uint8_t *b = 0;
  size_t n = 0;
  if (bs > 0 && proxy_get_buffer_bytes(BUF_CALL_BODY, 0, bs, &b, &n) == 0) {
    memcpy(body, b, n < 63 ? n : 63);
    free(b);
  }
  uint32_t code = 0;
  uint8_t *msg = 0;
  size_t ml = 0;
  proxy_get_status(&code, &msg, &ml);
  free(msg);
  if (proxy_set_effective_context(ctx) != 0) return;
  add_header(MAP_REQ, "x-call-status", status);
  add_header(MAP_REQ, "x-call-body", body);
  proxy_continue_stream(0);
}

EXPORT(proxy_on_tick) void on_tick(uint32_t root) {
  for (uint32_t i = 0; i < MAXCTX; i++) {
    if (defer_done[i] == 2) {
      defer_done[i] = 0;
      if (proxy_set_effective_context(i) == 0 && proxy_done() == 0)
        proxy_set_shared_data(S("deferred-done"), (const uint8_t *)"1", 1, 0);
    }
    if (paused_tick[i]) {
      paused_tick[i] = 0;
      if (proxy_set_effective_context(i) == 0) {
        add_header(MAP_REQ, "x-resumed-by", "tick");
        proxy_continue_stream(0);
      }
    }
  }
  proxy_set_effective_context(root);
}

EXPORT(proxy_on_request_headers) int on_request_headers(uint32_t ctx, size_t n, int eos) {
  char test[64] = {0};
  if (ctx < MAXCTX) get_header(MAP_REQ, "x-in", saved_in[ctx], sizeof saved_in[ctx]);
  get_header(MAP_REQ, "x-test", test, sizeof test);
  if (!strcmp(test, "deny")) {
    static const uint8_t hdrs[] = {1, 0, 0, 0, 6, 0, 0, 0, 1, 0, 0, 0, 'x', '-', 'd', 'e', 'n', 'y', 0, '1', 0};
    proxy_send_local_response(403, S("denied by test"), (const uint8_t *)"denied\n", 7, hdrs, sizeof hdrs, 0);
    return PAUSE;
  }
  if (!strcmp(test, "props")) do_props();
  if (!strcmp(test, "shared")) do_shared();
  if (!strcmp(test, "metric")) do_metric();
  if (!strcmp(test, "misc")) do_misc();
  if (!strcmp(test, "maps")) do_maps();
  if (!strcmp(test, "queue")) do_queue();
  if (!strcmp(test, "config")) {
    char key[32], *v;
    uint8_t *d = 0;
    size_t dn = 0;
    uint32_t cas;
    /* which root context serves this stream: the host passes it at create */
    snprintf(key, sizeof key, "cfg-%u", root_id);
    (void)key;
    (void)v;
    (void)d;
    (void)dn;
    (void)cas;
  }
  if (!strcmp(test, "httpcall")) return do_httpcall(ctx, "backend");
  if (!strcmp(test, "httpcall-unknown")) return do_httpcall(ctx, "nowhere");
  if (!strcmp(test, "defer-done") && ctx < MAXCTX) defer_done[ctx] = 1;
  if (!strcmp(test, "pause-tick")) {
    if (ctx < MAXCTX) paused_tick[ctx] = 1;
    return PAUSE;
  }
  if (!strcmp(test, "pause-forever")) return PAUSE;
  if (!strcmp(test, "close")) {
    proxy_close_stream(0);
    return PAUSE;
  }
  if (!strcmp(test, "trap")) __builtin_trap();
  if (!strcmp(test, "bad-status")) {
    char buf[16];
    snprintf(buf, sizeof buf, "%u", proxy_send_local_response(0, 0, 0, 0, 0, 0, 0, 0));
    add_header(MAP_REQ, "x-status-0", buf);
    snprintf(buf, sizeof buf, "%u", proxy_send_local_response(1000, 0, 0, 0, 0, 0, 0, 0));
    add_header(MAP_REQ, "x-status-1000", buf);
  }
  proxy_increment_metric(counter_id, 1);
  return CONTINUE;
}

EXPORT(proxy_on_request_body) int on_request_body(uint32_t ctx, size_t size, int eos) {
  if (!eos) return PAUSE; /* buffer the whole body */
  uint8_t *b = 0;
  size_t n = 0, total = 0;
  uint32_t flags = 0;
  if (proxy_get_buffer_status(BUF_REQ_BODY, &total, &flags) != 0 || total != size) return CONTINUE;
  if (size == 0 || proxy_get_buffer_bytes(BUF_REQ_BODY, 0, size, &b, &n) != 0) return CONTINUE;
  for (size_t i = 0; i < n; i++)
    if (b[i] >= 'a' && b[i] <= 'z') b[i] -= 32;
  proxy_set_buffer_bytes(BUF_REQ_BODY, 0, n, b, n);
  proxy_set_buffer_bytes(BUF_REQ_BODY, (size_t)-1, 0, (const uint8_t *)"!", 1); /* append */
  free(b);
  return CONTINUE;
}

EXPORT(proxy_on_response_headers) int on_response_headers(uint32_t ctx, size_t n, int eos) {
  if (ctx < MAXCTX && saved_in[ctx][0]) add_header(MAP_RESP, "x-out", saved_in[ctx]);
  add_header(MAP_RESP, "x-plugin", "all");
  return CONTINUE;
}

/* SSE: each call carries one event. Events containing "drop" are dropped,
 * events containing "secret" are rewritten. */
EXPORT(proxy_on_response_body) int on_response_body(uint32_t ctx, size_t size, int eos) {
  uint8_t *b = 0;
  size_t n = 0;
  if (size == 0 || proxy_get_buffer_bytes(BUF_RESP_BODY, 0, size, &b, &n) != 0) return CONTINUE;
  char tmp[4096];
  size_t m = n < sizeof tmp - 1 ? n : sizeof tmp - 1;
  memcpy(tmp, b, m);
  tmp[m] = 0;
  free(b);
  if (strstr(tmp, "drop")) {
    proxy_set_buffer_bytes(BUF_RESP_BODY, 0, n, (const uint8_t *)"", 0);
  } else if (strstr(tmp, "secret")) {
    static const char r[] = "data: [redacted]\n\n";
    proxy_set_buffer_bytes(BUF_RESP_BODY, 0, n, (const uint8_t *)r, sizeof r - 1);
  }
  return CONTINUE;
}

EXPORT(proxy_on_done) int on_done(uint32_t ctx) {
  if (ctx < MAXCTX && defer_done[ctx] == 1) {
    defer_done[ctx] = 2; /* finish later, from a tick, with proxy_done */
    return 0;
  }
  return 1;
}

EXPORT(proxy_on_log) void on_log(uint32_t ctx) {
  char path[128];
  if (get_header(MAP_REQ, ":path", path, sizeof path) >= 0) {
    proxy_set_shared_data(S("last-log-path"), (const uint8_t *)path, strlen(path), 0);
  }
}

EXPORT(proxy_on_delete) void on_delete(uint32_t ctx) {}
