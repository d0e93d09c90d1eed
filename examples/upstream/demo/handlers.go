package demo

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// JSONBody is what GET /json answers.
const JSONBody = `{"service":"wasmgate-demo","message":"hello from the demo upstream","ok":true}`

// Pattern is the repeating content of /bytes: byte i of a response is
// Pattern[i%len(Pattern)].
const Pattern = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// smallBytes is the largest /bytes body sent from one buffer instead of a
// stream.
const smallBytes = 64 << 10

var patternBuf = []byte(strings.Repeat(Pattern, smallBytes/len(Pattern)))

// Handler serves every endpoint; Start uses it, and tests can mount it on
// their own fasthttp server.
func (s *Server) Handler(ctx *fasthttp.RequestCtx) {
	path := string(ctx.Path())
	method := string(ctx.Method())
	switch {
	case path == "/json":
		if onlyGet(ctx, method) {
			ctx.SetContentType("application/json")
			ctx.SetBodyString(JSONBody)
		}
	case path == "/bytes":
		if onlyGet(ctx, method) {
			s.bytes(ctx)
		}
	case path == "/echo":
		if method != "POST" && method != "PUT" {
			refuse(ctx, fasthttp.StatusMethodNotAllowed, "use POST or PUT")
			return
		}
		s.echo(ctx)
	case path == "/headers":
		if onlyGet(ctx, method) {
			headers(ctx)
		}
	case strings.HasPrefix(path, "/status/"):
		status(ctx, strings.TrimPrefix(path, "/status/"))
	case path == "/slow":
		if onlyGet(ctx, method) {
			s.slow(ctx)
		}
	case path == "/health":
		ctx.SetBodyString("ok\n")
	case path == "/sse":
		if onlyGet(ctx, method) {
			s.counterStream(ctx)
		}
	case path == "/sse/mixed":
		if onlyGet(ctx, method) {
			s.mixedStream(ctx)
		}
	case path == "/mcp":
		s.serveMCP(ctx, method)
	default:
		refuse(ctx, fasthttp.StatusNotFound, "no such endpoint: "+path)
	}
}

func onlyGet(ctx *fasthttp.RequestCtx, method string) bool {
	if method == "GET" || method == "HEAD" {
		return true
	}
	refuse(ctx, fasthttp.StatusMethodNotAllowed, "use GET")
	return false
}

// refuse answers status with a one-line reason.
func refuse(ctx *fasthttp.RequestCtx, code int, reason string) {
	ctx.ResetBody()
	ctx.SetStatusCode(code)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString(reason + "\n")
}

func (s *Server) bytes(ctx *fasthttp.RequestCtx) {
	n := int64(1024)
	if v := ctx.QueryArgs().Peek("n"); v != nil {
		var err error
		if n, err = strconv.ParseInt(string(v), 10, 64); err != nil || n < 0 {
			refuse(ctx, fasthttp.StatusBadRequest, "n must be a byte count")
			return
		}
	}
	if n > s.opts.MaxBytes {
		refuse(ctx, fasthttp.StatusBadRequest, "n is over the limit of "+strconv.FormatInt(s.opts.MaxBytes, 10))
		return
	}
	ctx.SetContentType("application/octet-stream")
	if n <= smallBytes {
		ctx.SetBody(patternBuf[:n])
		return
	}
	ctx.SetBodyStream(&patternReader{left: n}, int(n))
}

// patternReader produces n bytes of Pattern.
type patternReader struct {
	off, left int64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), p.left)]
	n := 0
	for n < len(b) {
		start := int((p.off + int64(n)) % int64(len(Pattern)))
		n += copy(b[n:], patternBuf[start:])
	}
	p.off += int64(n)
	p.left -= int64(n)
	return n, nil
}

func (s *Server) echo(ctx *fasthttp.RequestCtx) {
	var name []byte
	for k, v := range ctx.Request.Header.All() {
		name = append(append(name[:0], "X-Echo-"...), k...)
		ctx.Response.Header.AddBytesKV(name, v)
	}
	if ct := ctx.Request.Header.ContentType(); len(ct) > 0 {
		ctx.Response.Header.SetContentTypeBytes(ct)
	} else {
		ctx.Response.Header.SetContentType("application/octet-stream")
	}
	if body := ctx.RequestBodyStream(); body != nil {
		ctx.SetBodyStream(body, ctx.Request.Header.ContentLength())
		return
	}
	ctx.SetBody(ctx.Request.Body())
}

func headers(ctx *fasthttp.RequestCtx) {
	h := map[string][]string{}
	for k, v := range ctx.Request.Header.All() {
		h[string(k)] = append(h[string(k)], string(v))
	}
	out, _ := json.Marshal(struct {
		Method  string              `json:"method"`
		URI     string              `json:"uri"`
		Headers map[string][]string `json:"headers"`
	}{string(ctx.Method()), string(ctx.RequestURI()), h})
	ctx.SetContentType("application/json")
	ctx.SetBody(out)
}

func status(ctx *fasthttp.RequestCtx, code string) {
	n, err := strconv.Atoi(code)
	if err != nil || n < 200 || n > 599 {
		refuse(ctx, fasthttp.StatusBadRequest, "status code must be 200-599")
		return
	}
	ctx.SetStatusCode(n)
	ctx.SetContentType("text/plain; charset=utf-8")
	if n != fasthttp.StatusNoContent && n != fasthttp.StatusNotModified {
		ctx.SetBodyString("status " + code + "\n")
	}
}

func (s *Server) slow(ctx *fasthttp.RequestCtx) {
	d := time.Second
	if v := ctx.QueryArgs().Peek("delay"); v != nil {
		var err error
		if d, err = time.ParseDuration(string(v)); err != nil || d < 0 || d > time.Minute {
			refuse(ctx, fasthttp.StatusBadRequest, "delay must be a duration up to 1m")
			return
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.done:
	}
	ctx.SetBodyString("slow\n")
}

// readBody reads the whole request body, refusing more than limit bytes.
func readBody(ctx *fasthttp.RequestCtx, limit int64) ([]byte, error) {
	if ctx.Request.Header.ContentLength() > int(limit) {
		return nil, fmt.Errorf("body over %d bytes", limit)
	}
	stream := ctx.RequestBodyStream()
	if stream == nil {
		return ctx.Request.Body(), nil
	}
	b, err := io.ReadAll(io.LimitReader(stream, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("body over %d bytes", limit)
	}
	return b, nil
}
