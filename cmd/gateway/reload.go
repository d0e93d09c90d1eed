package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/wasmgate/wasmgate/gateway"
)

// reloadOnSIGHUP re-reads the configuration file, and reloads plugins whose
// module changed on disk, on every SIGHUP until stop is called (stop may be
// called more than once). A failed reload is logged and changes nothing.
func reloadOnSIGHUP(g *gateway.Gateway, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-hup:
			}
			log.Info("SIGHUP: reloading configuration and plugins")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			_, _ = g.ReloadConfig(ctx) // logs its outcome
			cancel()
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(hup)
			close(done)
			<-finished
		})
	}
}
