package upstream

import (
	"errors"
	"net"
	"os"
	"syscall"

	"github.com/valyala/fasthttp"
)

// RequestBodyError is a failure reading the request body while sending it:
// the client's fault (malformed chunking, over the size limit, gone), not
// the target's. It is not counted against the target's health.
type RequestBodyError struct{ Err error }

func (e *RequestBodyError) Error() string { return "read request body: " + e.Err.Error() }
func (e *RequestBodyError) Unwrap() error { return e.Err }

type errKind uint8

const (
	kindRefused errKind = iota
	kindReset
	kindTimeout
	kindPoolFull
	kindNoTarget
	kindOther
	kindClient
	numKinds
)

var kindNames = [numKinds]string{"refused", "reset", "timeout", "pool_full", "no_target", "other", "client_body"}

func kindOf(err error) errKind {
	var de *DialError
	var be *RequestBodyError
	switch {
	case errors.As(err, &be):
		return kindClient
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return kindPoolFull
	case errors.Is(err, ErrNoHealthyTarget):
		return kindNoTarget
	case isTimeout(err):
		return kindTimeout
	case errors.As(err, &de):
		return kindRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, net.ErrClosed):
		return kindReset
	}
	return kindOther
}

func isTimeout(err error) bool {
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) ||
		errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Status maps an error from Do to the status the client gets and a
// one-line reason: 503 when capacity is exhausted (pool full, no healthy
// target), 504 when the upstream was too slow, 502 when it refused or broke
// the connection.
func Status(err error) (code int, reason string) {
	switch kindOf(err) {
	case kindClient:
		return fasthttp.StatusBadRequest, "malformed request body"
	case kindPoolFull:
		return fasthttp.StatusServiceUnavailable, "upstream connection pool full"
	case kindNoTarget:
		return fasthttp.StatusServiceUnavailable, "no healthy upstream target"
	case kindTimeout:
		return fasthttp.StatusGatewayTimeout, "upstream timed out"
	case kindRefused:
		return fasthttp.StatusBadGateway, "upstream refused connection"
	case kindReset:
		return fasthttp.StatusBadGateway, "upstream closed connection"
	}
	if errors.Is(err, ErrUnknownUpstream) {
		return fasthttp.StatusBadGateway, "unknown upstream"
	}
	return fasthttp.StatusBadGateway, "upstream error"
}
