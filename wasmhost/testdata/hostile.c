/* hostile.c: a guest that misbehaves on purpose. Lifecycle misbehaviour is
 * chosen by vm_config / plugin configuration ("trap", "loop"); per-request
 * misbehaviour by the "x-hostile" request header, as "<what>:<callback>"
 * with what in loop, trap, recurse, membomb and callback in req_headers,
 * req_body, resp_headers, resp_body, done, log. Other values: logspam,
 * headers10k, status0, status1000, grow (allocate 1 MiB and keep it). */
#include <stdlib.h>
#include <string.h>
#include "abi.h"

#define S(lit) lit, sizeof(lit) - 1

EXPORT(proxy_abi_version_0_2_1) void abi_marker(void) {}
EXPORT(proxy_on_memory_allocate) void *on_alloc(size_t n) { return malloc(n); }

#define MAXCTX 4096
static char mode[MAXCTX][32];
static volatile int sink;
static char *volatile kept[256]; /* keeps allocations alive for the optimizer */
static unsigned nkept;

static void spin(void) {
  for (;;) sink++;
}

static int recurse(int n) {
  volatile char pad[256];
  pad[n & 255] = (char)n;
  return recurse(n + 1) + pad[(n * 7) & 255];
}

static void membomb(void) {
  for (;;) {
    char *p = malloc(1 << 20);
    if (!p) __builtin_trap();
    memset(p, 1, 1 << 20);
    kept[nkept++ % 256] = p;
  }
}

static int read_buf(uint32_t type, size_t size, char *out, size_t cap) {
  uint8_t *d = 0;
  size_t n = 0;
  out[0] = 0;
  if (size == 0 || proxy_get_buffer_bytes(type, 0, size, &d, &n) != 0) return 0;
  if (n >= cap) n = cap - 1;
  memcpy(out, d, n);
  out[n] = 0;
  free(d);
  return (int)n;
}

static void act(uint32_t ctx, const char *cb) {
  if (ctx >= MAXCTX) return;
  const char *m = mode[ctx];
  const char *colon = strchr(m, ':');
  if (!colon || strcmp(colon + 1, cb) != 0) return;
  size_t n = colon - m;
  if (n == 4 && !memcmp(m, "loop", 4)) spin();
  if (n == 4 && !memcmp(m, "trap", 4)) __builtin_trap();
  if (n == 7 && !memcmp(m, "recurse", 7)) sink = recurse(0);
  if (n == 7 && !memcmp(m, "membomb", 7)) membomb();
}

EXPORT(proxy_on_vm_start) int on_vm_start(uint32_t root, size_t size) {
  char cfg[64];
  read_buf(BUF_VM_CONFIG, size, cfg, sizeof cfg);
  if (strstr(cfg, "trap")) __builtin_trap();
  if (strstr(cfg, "loop")) spin();
  return 1;
}

EXPORT(proxy_on_configure) int on_configure(uint32_t root, size_t size) {
  char cfg[64];
  read_buf(BUF_PLUGIN_CONFIG, size, cfg, sizeof cfg);
  if (strstr(cfg, "trap")) __builtin_trap();
  if (strstr(cfg, "loop")) spin();
  if (strstr(cfg, "tick")) proxy_set_tick_period_milliseconds(1);
  return 1;
}

EXPORT(proxy_on_tick) void on_tick(uint32_t root) { spin(); }

EXPORT(proxy_on_context_create) void on_context_create(uint32_t id, uint32_t parent) {
  if (id < MAXCTX) mode[id][0] = 0;
}

EXPORT(proxy_on_request_headers) int on_request_headers(uint32_t ctx, size_t n, int eos) {
  uint8_t *v = 0;
  size_t vn = 0;
  if (ctx < MAXCTX && proxy_get_header_map_value(MAP_REQ, S("x-hostile"), &v, &vn) == 0) {
    if (vn >= sizeof mode[ctx]) vn = sizeof mode[ctx] - 1;
    memcpy(mode[ctx], v, vn);
    mode[ctx][vn] = 0;
    free(v);
  }
  const char *m = ctx < MAXCTX ? mode[ctx] : "";
  if (!strcmp(m, "logspam")) {
    for (int i = 0; i < 20000; i++) proxy_log(2, S("spam spam spam"));
  }
  if (!strcmp(m, "status0")) proxy_send_local_response(0, 0, 0, 0, 0, 0, 0, 0);
  if (!strcmp(m, "status1000")) proxy_send_local_response(1000, 0, 0, 0, 0, 0, 0, 0);
  if (!strcmp(m, "grow")) {
    char *p = malloc(1 << 20);
    if (p) memset(p, 2, 1 << 20); /* never freed: memory only grows */
    kept[nkept++ % 256] = p;
  }
  act(ctx, "req_headers");
  return CONTINUE;
}

EXPORT(proxy_on_request_body) int on_request_body(uint32_t ctx, size_t n, int eos) {
  act(ctx, "req_body");
  return CONTINUE;
}

EXPORT(proxy_on_response_headers) int on_response_headers(uint32_t ctx, size_t n, int eos) {
  if (ctx < MAXCTX && !strcmp(mode[ctx], "headers10k")) {
    for (int i = 0; i < 10000; i++) proxy_add_header_map_value(MAP_RESP, S("x-spam"), S("0123456789"));
  }
  act(ctx, "resp_headers");
  return CONTINUE;
}

EXPORT(proxy_on_response_body) int on_response_body(uint32_t ctx, size_t n, int eos) {
  act(ctx, "resp_body");
  return CONTINUE;
}

EXPORT(proxy_on_done) int on_done(uint32_t ctx) {
  act(ctx, "done");
  return 1;
}

EXPORT(proxy_on_log) void on_log(uint32_t ctx) { act(ctx, "log"); }
EXPORT(proxy_on_delete) void on_delete(uint32_t ctx) {}
