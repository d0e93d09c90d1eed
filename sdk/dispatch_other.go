//go:build !wasip1

package sdk

// Outside Wasm nothing calls a plugin, so these only keep plugins
// compiling on the host.

// SetPlugin installs the plugin (a no-op outside Wasm).
func SetPlugin(Plugin) {}

// SetGCInterval sets the forced collection interval (a no-op outside Wasm).
func SetGCInterval(int) {}

// SetGCThreshold sets the bytes between forced collections (a no-op
// outside Wasm).
func SetGCThreshold(int) {}
