// Command upstream runs the demo upstream (package demo) that `make run`
// puts behind the gateway and `make bench` measures against.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/wasmgate/wasmgate/examples/upstream/demo"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9000", "address to serve on")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv, err := demo.StartWith(*listen, demo.Options{Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	log.Info("demo upstream listening", "addr", srv.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	if err := srv.Close(); err != nil {
		log.Error("demo upstream shutdown", "err", err)
		os.Exit(1)
	}
}
