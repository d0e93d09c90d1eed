// Command loadgen drives bounded load at a local HTTP server (the gateway,
// the bare proxy baseline or the demo upstream) and reports what it saw. It
// is what `make bench` runs; it only ever targets loopback addresses.
//
//	loadgen -mode http -url http://127.0.0.1:8080/bytes?n=100 -c 64 -d 5s
//	loadgen -mode sse  -url 'http://127.0.0.1:8080/sse?n=0&interval=100ms' -streams 1000 -d 10s
//
// Mode http keeps -c connections busy, each sending requests back to back,
// for -d or until -n requests are done, and reports requests per second,
// latency quantiles and failures by status or error kind. Mode sse opens
// -streams concurrent event streams (spread over -ramp), counts events per
// second and checks that each stream's numeric ids arrive in order without
// gaps. -sessions N gives every http request one of N session ids, in turn,
// in the -session-header field (Mcp-Session-Id), so that a gateway that
// records sessions sees N of them interleaved, as in front of an MCP
// server. One human-readable line goes to stderr; -json also writes the
// result as JSON to stdout.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

type options struct {
	mode     string
	url      string
	method   string
	bodySize int
	conns    int
	requests int64
	duration time.Duration
	timeout  time.Duration
	streams  int
	ramp     time.Duration
	json     bool
	sessions int
	sessHdr  string
}

const (
	maxDuration = 10 * time.Minute
	maxConns    = 20000
	maxSessions = 1 << 20
)

func main() {
	var o options
	flag.StringVar(&o.mode, "mode", "http", "http or sse")
	flag.StringVar(&o.url, "url", "http://127.0.0.1:8080/json", "target URL (loopback only)")
	flag.StringVar(&o.method, "method", "GET", "http mode: request method")
	flag.IntVar(&o.bodySize, "body", 0, "http mode: request body size in bytes")
	flag.IntVar(&o.conns, "c", 64, "http mode: concurrent connections")
	flag.Int64Var(&o.requests, "n", 0, "http mode: stop after this many requests (0: run for -d)")
	flag.DurationVar(&o.duration, "d", 5*time.Second, "how long to run (at most 10m)")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Second, "http mode: per-request timeout")
	flag.IntVar(&o.streams, "streams", 100, "sse mode: concurrent streams")
	flag.DurationVar(&o.ramp, "ramp", time.Second, "sse mode: spread stream starts over this long")
	flag.BoolVar(&o.json, "json", false, "also write the result as JSON to stdout")
	flag.IntVar(&o.sessions, "sessions", 0, "http mode: send each request with one of this many session ids, in turn (0: none)")
	flag.StringVar(&o.sessHdr, "session-header", "Mcp-Session-Id", "http mode: the header field that carries the session id")
	flag.Parse()
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	var (
		res interface{ line() string }
		err error
	)
	switch o.mode {
	case "http":
		res, err = runHTTP(o)
	case "sse":
		res, err = runSSE(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, res.line())
	if o.json {
		out, _ := json.Marshal(res)
		fmt.Println(string(out))
	}
}

func (o *options) check() error {
	if o.mode != "http" && o.mode != "sse" {
		return fmt.Errorf("-mode must be http or sse, not %q", o.mode)
	}
	u, err := url.Parse(o.url)
	if err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	if u.Scheme != "http" {
		return fmt.Errorf("-url: only http:// is supported, not %q", u.Scheme)
	}
	if !isLoopback(u.Hostname()) {
		return fmt.Errorf("-url: %q is not a loopback address; loadgen only targets this machine", u.Hostname())
	}
	if u.Port() == "" {
		return fmt.Errorf("-url: give a port")
	}
	if o.duration <= 0 || o.duration > maxDuration {
		return fmt.Errorf("-d must be in (0, %v]", maxDuration)
	}
	if o.conns < 1 || o.conns > maxConns || o.streams < 1 || o.streams > maxConns {
		return fmt.Errorf("-c and -streams must be in [1, %d]", maxConns)
	}
	if o.bodySize < 0 || o.bodySize > 64<<20 {
		return fmt.Errorf("-body must be in [0, 64MiB]")
	}
	if o.requests < 0 {
		return fmt.Errorf("-n must not be negative")
	}
	if o.sessions < 0 || o.sessions > maxSessions {
		return fmt.Errorf("-sessions must be in [0, %d]", maxSessions)
	}
	if o.sessions > 0 && o.sessHdr == "" {
		return fmt.Errorf("-session-header must not be empty")
	}
	o.method = strings.ToUpper(o.method)
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
