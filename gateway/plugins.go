package gateway

import (
	"io"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
)

// newChains builds the plugin chains. This minimal version has no plugin
// host: routes without plugins get the empty chain, routes with plugins are
// refused. The Wasm host wiring replaces it.
func newChains(cfg *config.Config, g *Gateway) (chain.Builder, io.Closer, error) {
	return chain.NopBuilder{}, nil, nil
}
