// Command gateway runs wasmgate, an HTTP/SSE reverse proxy whose
// interceptors are sandboxed WebAssembly plugins.
//
//	gateway run [-config FILE]       serve (the default subcommand)
//	gateway validate -config FILE    check a configuration: prints "ok" or the error
//	gateway sessions ...             read recorded sessions
//	gateway plugins ...              check plugin modules
//	gateway version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/wasmgate/wasmgate/gateway"
	"github.com/wasmgate/wasmgate/gateway/config"
)

// version is set with -ldflags "-X main.version=..."; otherwise the module
// build info is used.
var version = ""

func main() { os.Exit(dispatch(os.Args[1:])) }

func dispatch(args []string) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return runCmd(args)
	}
	switch args[0] {
	case "run":
		return runCmd(args[1:])
	case "validate":
		return validateCmd(args[1:])
	case "version":
		fmt.Println(versionString())
		return 0
	case "sessions":
		return sessionsCmd(args[1:])
	case "plugins":
		return pluginsCmd(args[1:])
	case "help", "-h", "--help":
		usage(os.Stdout)
		return 0
	}
	fmt.Fprintf(os.Stderr, "gateway: unknown command %q\n", args[0])
	usage(os.Stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: gateway <command> [flags]

commands:
  run [-config FILE]        serve (default; without -config: examples/gateway.yaml if present, else built-in defaults)
  validate -config FILE     check a configuration file
  sessions list|show|export read recorded sessions
  plugins check FILE.wasm   check a plugin module
  version                   print the version
`)
}

func versionString() string {
	if version != "" {
		return "wasmgate " + version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " " + s.Value[:12]
			}
		}
		return "wasmgate " + v + " " + bi.GoVersion
	}
	return "wasmgate (unknown version)"
}

// loadConfig reads path, or with path "" the example file when present,
// else the built-in defaults.
func loadConfig(path string) (*config.Config, error) {
	if path != "" {
		return config.Load(path)
	}
	const example = "examples/gateway.yaml"
	if _, err := os.Stat(example); err == nil {
		return config.Load(example)
	}
	return config.Parse(config.DefaultYAML())
}

func newLogger(c config.Log, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log.level %q: %w", c.Level, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.Format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log.format %q: want text or json", c.Format)
}

func runCmd(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := fs.String("config", "", "configuration file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		return 1
	}
	log, err := newLogger(cfg.Log, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		return 1
	}
	slog.SetDefault(log)

	g, err := gateway.New(cfg, gateway.Options{Logger: log})
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	if err := g.Start(); err != nil {
		log.Error("start failed", "err", err)
		_ = g.Shutdown(context.Background())
		return 1
	}
	log.Info("wasmgate running", "version", versionString(), "config", cfg.Source, "proxy", "http://"+g.Addr())
	stopReload := reloadOnSIGHUP(g, log)

	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	s := <-sig
	stopReload()
	log.Info("shutting down", "signal", s.String(), "drain_timeout", cfg.Shutdown.DrainTimeout.D())
	go func() {
		// A second signal skips the drain.
		<-sig
		log.Warn("second signal: exiting now")
		os.Exit(1)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.DrainTimeout.D()+10*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Error("shutdown", "err", err)
	}
	return 0
}

func validateCmd(args []string) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	path := fs.String("config", "", "configuration file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" {
		fmt.Fprintln(os.Stderr, "validate: -config FILE is required")
		return 2
	}
	if _, err := config.Load(*path); err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("ok")
	return 0
}
