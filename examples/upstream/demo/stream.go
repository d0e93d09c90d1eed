package demo

import (
	"bufio"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/wasmgate/wasmgate/gateway/sse"
)

// MixedEvent is one block of the /sse/mixed stream: a comment when Comment
// is not empty, else an event.
type MixedEvent struct {
	Comment        string
	ID, Name, Data string
}

// Mixed is the sequence GET /sse/mixed writes (see the package doc).
var Mixed = []MixedEvent{
	{Comment: "demo mixed stream"},
	{ID: "1", Data: "hello"},
	{ID: "2", Name: "shout", Data: "make me loud"},
	{ID: "3", Name: "drop", Data: "drop me"},
	{Comment: "keep-alive"},
	{ID: "4", Data: "line one\nline two"},
	{ID: "5", Name: "shout", Data: "second shout"},
	{ID: "6", Name: "drop", Data: "drop me too"},
	{ID: "7", Data: "bye"},
}

// AppendWire appends the block's wire form.
func (e MixedEvent) AppendWire(dst []byte) []byte {
	if e.Comment != "" {
		return sse.AppendComment(dst, e.Comment)
	}
	return sse.AppendEvent(dst, e.ID, e.Name, []byte(e.Data))
}

func setStreamHeaders(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
}

// counterStream serves /sse: numbered events, resumable with Last-Event-ID.
func (s *Server) counterStream(ctx *fasthttp.RequestCtx) {
	q := ctx.QueryArgs()
	n, size := 10, 0
	interval := 10 * time.Millisecond
	var err error
	if v := q.Peek("n"); v != nil {
		if n, err = strconv.Atoi(string(v)); err != nil || n < 0 {
			refuse(ctx, fasthttp.StatusBadRequest, "n must be an event count (0: endless)")
			return
		}
	}
	if v := q.Peek("size"); v != nil {
		if size, err = strconv.Atoi(string(v)); err != nil || size < 0 || size > 1<<20 {
			refuse(ctx, fasthttp.StatusBadRequest, "size must be a byte count up to 1MiB")
			return
		}
	}
	if v := q.Peek("interval"); v != nil {
		if interval, err = time.ParseDuration(string(v)); err != nil || interval < 0 || interval > time.Hour {
			refuse(ctx, fasthttp.StatusBadRequest, "interval must be a duration up to 1h")
			return
		}
	}
	start := 1
	if v := ctx.Request.Header.Peek("Last-Event-ID"); len(v) > 0 {
		if last, err := strconv.Atoi(string(v)); err == nil && last >= 0 {
			start = last + 1
		}
	}
	setStreamHeaders(ctx)
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		s.openStreams.Add(1)
		defer s.openStreams.Add(-1)
		var (
			buf, data []byte
			timer     *time.Timer
		)
		for k := start; n == 0 || k <= n; k++ {
			if k > start && interval > 0 {
				if timer == nil {
					timer = time.NewTimer(interval)
					defer timer.Stop()
				} else {
					timer.Reset(interval)
				}
				select {
				case <-timer.C:
				case <-s.done:
					return
				}
			} else {
				select {
				case <-s.done:
					return
				default:
				}
			}
			data = strconv.AppendInt(data[:0], int64(k), 10)
			for len(data) < size {
				data = append(data, '.')
			}
			buf = sse.AppendEvent(buf[:0], strconv.Itoa(k), "", data)
			if _, err := w.Write(buf); err != nil {
				return
			}
			if err := w.Flush(); err != nil {
				return
			}
		}
	})
}

// mixedStream serves /sse/mixed.
func (s *Server) mixedStream(ctx *fasthttp.RequestCtx) {
	setStreamHeaders(ctx)
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		s.openStreams.Add(1)
		defer s.openStreams.Add(-1)
		var buf []byte
		for _, e := range Mixed {
			buf = e.AppendWire(buf[:0])
			if _, err := w.Write(buf); err != nil {
				return
			}
			if err := w.Flush(); err != nil {
				return
			}
		}
	})
}
