package proxy

import (
	"bufio"

	"github.com/valyala/fasthttp"
)

// relay streams a text/event-stream response to the client, flushing as
// data arrives.
func (x *exchange) relay(ctx *fasthttp.RequestCtx) {
	x.p.streams.Add(1)
	ctx.Response.Header.SetContentLength(-1)
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer x.p.streams.Done()
		defer x.finish()
		buf := make([]byte, 4096)
		for {
			n, err := x.body.Read(buf)
			if n > 0 {
				_ = x.writeDeadline()
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				if werr := w.Flush(); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
}
