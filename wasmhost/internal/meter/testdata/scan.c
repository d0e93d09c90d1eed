// scan.c is the C guest of the meter package's differential tests and
// benchmarks: a 1 KB header-style scan plus a little recursion and
// indirect calls, built as a WASI reactor by internal/wasmbuild.
#include <stdint.h>
#include <string.h>

__attribute__((import_module("env"), import_name("trace")))
void trace(int32_t i, int64_t v);

static unsigned char buf[4096];

__attribute__((export_name("buffer"))) unsigned char *buffer(void) { return buf; }

__attribute__((export_name("scan"))) int32_t scan(int32_t n) {
	int32_t c = 0;
	for (int32_t i = 0; i < n; i++) {
		unsigned char b = buf[i];
		if (b == '\n' || b == ':') c++;
	}
	return c;
}

static int64_t fib(int32_t n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

typedef int64_t (*op)(int64_t, int64_t);
static int64_t add(int64_t a, int64_t b) { return a + b; }
static int64_t mul(int64_t a, int64_t b) { return a * b + 1; }
static volatile op ops[2] = {add, mul};

__attribute__((export_name("work"))) int64_t work(int32_t n) {
	int64_t acc = fib(n % 20);
	for (int32_t i = 0; i < n; i++) {
		acc = ops[i & 1](acc, i);
		if (i % 16 == 0) trace(i, acc);
	}
	memset(buf + 2048, (int)(acc & 0xff), (size_t)n);
	memmove(buf + 3000, buf + 2048, (size_t)(n / 2));
	return acc;
}
