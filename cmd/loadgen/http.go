package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

type httpResult struct {
	Mode      string           `json:"mode"`
	URL       string           `json:"url"`
	Method    string           `json:"method"`
	Conns     int              `json:"conns"`
	DurationS float64          `json:"duration_s"`
	Requests  int64            `json:"requests"` // completed with a response, any status
	OK        int64            `json:"ok"`       // 2xx
	RPS       float64          `json:"rps"`      // Requests per second
	P50us     float64          `json:"p50_us"`
	P90us     float64          `json:"p90_us"`
	P99us     float64          `json:"p99_us"`
	MaxUs     float64          `json:"max_us"`
	BodyBytes int64            `json:"body_bytes"`
	Errors    map[string]int64 `json:"errors"` // by "status_NNN" or error kind
}

func (r *httpResult) line() string {
	return fmt.Sprintf("http %s %s c=%d: %d requests in %.1fs = %.0f req/s, latency p50 %.0fµs p90 %.0fµs p99 %.0fµs max %.0fµs, errors %s",
		r.Method, r.URL, r.Conns, r.Requests, r.DurationS, r.RPS, r.P50us, r.P90us, r.P99us, r.MaxUs, formatCounts(r.Errors))
}

func formatCounts(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// errorKind names a failed request for the error table.
func errorKind(err error) string {
	var op *net.OpError
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout):
		return "timeout"
	case errors.Is(err, fasthttp.ErrNoFreeConns), errors.Is(err, fasthttp.ErrConnPoolStrategyNotImpl):
		return "no_free_conns"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, syscall.EPIPE):
		return "conn_broken"
	case errors.As(err, &op):
		return "net_" + op.Op
	}
	return "other"
}

func runHTTP(o options) (*httpResult, error) {
	u, err := url.Parse(o.url)
	if err != nil {
		return nil, err
	}
	hc := &fasthttp.HostClient{
		Addr:                      u.Host,
		MaxConns:                  o.conns,
		MaxIdemponentCallAttempts: 1,
		ReadTimeout:               o.timeout,
		WriteTimeout:              o.timeout,
		MaxConnWaitTimeout:        o.timeout,
		ReadBufferSize:            16 << 10,
		NoDefaultUserAgentHeader:  true,
	}
	defer hc.CloseIdleConnections()
	body := bytes.Repeat([]byte("x"), o.bodySize)

	type worker struct {
		h      hist
		ok     int64
		bytes  int64
		errors map[string]int64
	}
	workers := make([]worker, o.conns)
	var issued, session atomic.Int64
	start := time.Now()
	deadline := start.Add(o.duration)
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		w.errors = map[string]int64{}
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(o.url)
			req.Header.SetMethod(o.method)
			if len(body) > 0 {
				req.SetBody(body)
			}
			var id []byte
			for {
				t0 := time.Now()
				if !t0.Before(deadline) || (o.requests > 0 && issued.Add(1) > o.requests) {
					return
				}
				if o.sessions > 0 {
					id = strconv.AppendInt(append(id[:0], "loadgen-"...), (session.Add(1)-1)%int64(o.sessions), 10)
					req.Header.SetBytesV(o.sessHdr, id)
				}
				err := hc.Do(req, resp)
				d := time.Since(t0)
				if err != nil {
					w.errors[errorKind(err)]++
					continue
				}
				w.h.add(d)
				w.bytes += int64(len(resp.Body()))
				if sc := resp.StatusCode(); sc >= 200 && sc < 300 {
					w.ok++
				} else {
					w.errors[fmt.Sprintf("status_%d", sc)]++
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	var h hist
	res := &httpResult{Mode: "http", URL: o.url, Method: o.method, Conns: o.conns,
		DurationS: elapsed.Seconds(), Errors: map[string]int64{}}
	for i := range workers {
		w := &workers[i]
		h.merge(&w.h)
		res.OK += w.ok
		res.BodyBytes += w.bytes
		for k, v := range w.errors {
			res.Errors[k] += v
		}
	}
	res.Requests = int64(h.n)
	res.RPS = float64(h.n) / elapsed.Seconds()
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	res.P50us, res.P90us, res.P99us = us(h.quantile(0.50)), us(h.quantile(0.90)), us(h.quantile(0.99))
	res.MaxUs = us(time.Duration(h.max))
	return res, nil
}
