package gateway

import (
	"io"

	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/event"
)

// newRecorder builds the session-event sink. This minimal version records
// nothing; the Pebble store wiring replaces it.
func newRecorder(cfg *config.Config, g *Gateway) (event.Sink, event.Replayer, io.Closer, error) {
	return event.Discard, nil, nil, nil
}
