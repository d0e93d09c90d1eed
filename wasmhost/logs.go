package wasmhost

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"time"
)

// Guest log rate limit per plugin: a token bucket shared by proxy_log,
// stdout and stderr, so a spamming guest costs a counter, not the log.
const (
	logRate  = 100 // lines per second
	logBurst = 200
	maxLine  = 4 << 10
)

type logLimiter struct {
	log *slog.Logger
	m   *pluginMetrics

	mu      sync.Mutex
	tokens  float64
	last    time.Time
	dropped uint64
}

func newLogLimiter(log *slog.Logger, m *pluginMetrics) *logLimiter {
	return &logLimiter{log: log, m: m, tokens: logBurst, last: time.Now()}
}

// allow takes one token; it reports how many lines were dropped since the
// last allowed one, so the log says so once.
func (l *logLimiter) allow() (bool, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.tokens = min(logBurst, l.tokens+now.Sub(l.last).Seconds()*logRate)
	l.last = now
	if l.tokens < 1 {
		l.dropped++
		l.m.logDropped.Inc()
		return false, 0
	}
	l.tokens--
	d := l.dropped
	l.dropped = 0
	return true, d
}

// guest logs a line a plugin wrote.
func (l *logLimiter) guest(level slog.Level, msg string) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	ok, dropped := l.allow()
	if !ok {
		return
	}
	if dropped > 0 {
		l.log.Warn("plugin log lines dropped by rate limit", "dropped", dropped)
	}
	if len(msg) > maxLine {
		msg = msg[:maxLine] + "…"
	}
	l.log.Log(context.Background(), level, msg, "source", "guest")
}

// warn logs a host-side complaint about a plugin, rate-limited too.
func (l *logLimiter) warn(msg string, args ...any) {
	if ok, _ := l.allow(); ok {
		l.log.Warn(msg, args...)
	}
}

// minLevel is proxy_get_log_level: the lowest level the log keeps.
func (l *logLimiter) minLevel() uint32 {
	ctx := context.Background()
	switch {
	case l.log.Enabled(ctx, slog.LevelDebug-4):
		return logTrace
	case l.log.Enabled(ctx, slog.LevelDebug):
		return logDebug
	case l.log.Enabled(ctx, slog.LevelInfo):
		return logInfo
	case l.log.Enabled(ctx, slog.LevelWarn):
		return logWarn
	case l.log.Enabled(ctx, slog.LevelError):
		return logError
	}
	return logCritical
}

// lineWriter turns a guest's stdout or stderr into log lines (INFO for
// stdout, ERROR for stderr, as the spec says). Written only under the VM
// lock, so it needs no lock of its own.
type lineWriter struct {
	logs   *logLimiter
	stream string
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := maxLine - len(w.buf)
			if len(p) > room {
				w.buf = append(w.buf, p[:max(room, 0)]...)
				w.flush()
				p = p[max(room, 0):]
				continue
			}
			w.buf = append(w.buf, p...)
			break
		}
		w.buf = append(w.buf, p[:i]...)
		p = p[i+1:]
		w.flush()
	}
	return n, nil
}

func (w *lineWriter) flush() {
	if w == nil || len(w.buf) == 0 {
		return
	}
	level := slog.LevelInfo
	if w.stream == "stderr" {
		level = slog.LevelError
	}
	w.logs.guest(level, trimNL(string(w.buf)))
	w.buf = w.buf[:0]
}
