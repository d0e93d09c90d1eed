package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wasmgate/wasmgate/gateway/sse"
)

type sseResult struct {
	Mode       string           `json:"mode"`
	URL        string           `json:"url"`
	Streams    int              `json:"streams"`
	DurationS  float64          `json:"duration_s"`
	Opened     int64            `json:"opened"`      // streams that got a 200 text/event-stream
	PeakOpen   int64            `json:"peak_open"`   // most streams open at once
	OpenFailed map[string]int64 `json:"open_failed"` // by "status_NNN" or error kind
	Events     int64            `json:"events"`
	EventsPerS float64          `json:"events_per_s"`
	// SteadyEventsPerS counts only from one second after the ramp to the
	// end, when every stream that opened is open (0 if the run is shorter).
	SteadyEventsPerS float64          `json:"steady_events_per_s"`
	OrderErrors      int64            `json:"order_errors"` // ids out of order, repeated, skipped or not numeric
	Completed        int64            `json:"completed"`    // streams the server ended cleanly
	StreamErrors     map[string]int64 `json:"stream_errors"`
	MinEvents        int64            `json:"min_events"` // fewest events any opened stream received
}

func (r *sseResult) line() string {
	return fmt.Sprintf("sse %s streams=%d: opened %d (peak %d open), %d events in %.1fs = %.0f events/s (steady %.0f/s), order errors %d, min events/stream %d, completed %d, open failures %s, stream errors %s",
		r.URL, r.Streams, r.Opened, r.PeakOpen, r.Events, r.DurationS, r.EventsPerS, r.SteadyEventsPerS, r.OrderErrors, r.MinEvents, r.Completed,
		formatCounts(r.OpenFailed), formatCounts(r.StreamErrors))
}

func streamErrorKind(err error) string {
	var op *net.OpError
	switch {
	case errors.Is(err, sse.ErrEventTooLarge):
		return "event_too_large"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "cut_mid_event"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "conn_reset"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT):
		return "timeout"
	case errors.As(err, &op):
		return "net_" + op.Op
	}
	return "other"
}

// runSSE holds o.streams streams open for o.duration. Streams use net/http:
// each needs its own connection for its whole life, which is exactly what
// the gateway has to sustain.
func runSSE(o options) (*sseResult, error) {
	tr := &http.Transport{
		DisableCompression:    true,
		MaxIdleConnsPerHost:   o.streams,
		ResponseHeaderTimeout: 30 * time.Second,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	start := time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(o.duration))
	defer cancel()

	var (
		mu                   sync.Mutex
		openFailed           = map[string]int64{}
		streamErrors         = map[string]int64{}
		opened, open, peak   atomic.Int64
		events, order, clean atomic.Int64
		live                 atomic.Int64 // events so far, for the steady rate
		minEvents            = int64(-1)
	)
	count := func(m map[string]int64, k string) {
		mu.Lock()
		m[k]++
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for i := range o.streams {
		delay := o.ramp * time.Duration(i) / time.Duration(o.streams)
		wg.Go(func() {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return
			}
			req, _ := http.NewRequestWithContext(ctx, "GET", o.url, nil)
			req.Header.Set("Accept", "text/event-stream")
			resp, err := client.Do(req)
			if err != nil {
				if ctx.Err() == nil {
					count(openFailed, streamErrorKind(err))
				}
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				count(openFailed, "status_"+strconv.Itoa(resp.StatusCode))
				return
			}
			opened.Add(1)
			n := open.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			defer open.Add(-1)

			var got, prev int64
			defer func() {
				events.Add(got)
				mu.Lock()
				if minEvents < 0 || got < minEvents {
					minEvents = got
				}
				mu.Unlock()
			}()
			p := sse.NewParser(resp.Body, 1<<20)
			for {
				e, err := p.Next()
				if err != nil {
					switch {
					case err == io.EOF:
						clean.Add(1)
					case ctx.Err() != nil: // our deadline: the normal end
					default:
						count(streamErrors, streamErrorKind(err))
					}
					return
				}
				if !e.Dispatchable() {
					continue
				}
				got++
				live.Add(1)
				if !e.HasID {
					continue
				}
				id, err := strconv.ParseInt(e.ID, 10, 64)
				if err != nil || (prev != 0 && id != prev+1) {
					order.Add(1)
				}
				prev = id
			}
		})
	}
	steady := make(chan float64, 1)
	go func() {
		settle := start.Add(o.ramp + time.Second)
		end := start.Add(o.duration - 50*time.Millisecond)
		if !settle.Before(end) {
			steady <- 0
			return
		}
		time.Sleep(time.Until(settle))
		n0, t0 := live.Load(), time.Now()
		time.Sleep(time.Until(end))
		steady <- float64(live.Load()-n0) / time.Since(t0).Seconds()
	}()
	wg.Wait()
	elapsed := time.Since(start)
	res := &sseResult{SteadyEventsPerS: <-steady, Mode: "sse", URL: o.url, Streams: o.streams, DurationS: elapsed.Seconds(),
		Opened: opened.Load(), PeakOpen: peak.Load(), OpenFailed: openFailed, Events: events.Load(),
		OrderErrors: order.Load(), Completed: clean.Load(), StreamErrors: streamErrors, MinEvents: max(minEvents, 0)}
	res.EventsPerS = float64(res.Events) / elapsed.Seconds()
	return res, nil
}
