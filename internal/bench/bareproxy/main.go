// Command bareproxy is the baseline the gateway is measured against in
// `make bench`: a fasthttp server whose handler forwards each request to one
// upstream with HostClient.Do and returns the response, nothing else (no
// routing, header rewriting, limits, sessions, plugins or metrics). The
// gateway's throughput is reported as a ratio of this loop's, measured in the
// same run on the same machine.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9100", "address to serve on")
	upstream := flag.String("upstream", "127.0.0.1:9000", "upstream host:port")
	maxConns := flag.Int("max-conns", 1024, "upstream connection pool size")
	flag.Parse()

	hc := &fasthttp.HostClient{
		Addr:     *upstream,
		MaxConns: *maxConns,
		// The gateway turns fasthttp's silent retries off; so does the
		// baseline, to compare like with like.
		MaxIdemponentCallAttempts: 1,
	}
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if err := hc.Do(&ctx.Request, &ctx.Response); err != nil {
				ctx.Error("bad gateway: "+err.Error(), fasthttp.StatusBadGateway)
			}
		},
		NoDefaultServerHeader: true,
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bareproxy:", err)
		os.Exit(1)
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		srv.Shutdown()
	}()
	log.Printf("bareproxy: %s -> %s", ln.Addr(), *upstream)
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "bareproxy:", err)
		os.Exit(1)
	}
}
