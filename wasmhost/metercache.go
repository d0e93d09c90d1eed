package wasmhost

import (
	"crypto/sha256"
	"sync"

	"github.com/wasmgate/wasmgate/wasmhost/internal/meter"
)

// meterCacheBytes bounds the instrumented modules kept in memory.
const meterCacheBytes = 64 << 20

// meteredModules remembers the meter's output by the SHA-256 of its input,
// so reloading a module seen before (a hot reload back to a previous
// version, a config reload that restarts an unchanged file) skips
// instrumentation, which for a multi-megabyte Go module costs about as much
// as a compilation-cache hit and VM start together. Instrumentation is
// deterministic, so a hit is exactly what Instrument would return. The
// oldest entries go first past meterCacheBytes.
var meteredModules = struct {
	sync.Mutex
	bytes int
	order [][32]byte
	byKey map[[32]byte][]byte
}{byKey: map[[32]byte][]byte{}}

func instrumentCached(wasm []byte) ([]byte, error) {
	key := sha256.Sum256(wasm)
	c := &meteredModules
	c.Lock()
	out, ok := c.byKey[key]
	c.Unlock()
	if ok {
		return out, nil
	}
	out, err := meter.Instrument(wasm, meter.Config{})
	if err != nil || len(out) > meterCacheBytes/4 {
		return out, err
	}
	c.Lock()
	defer c.Unlock()
	if _, ok := c.byKey[key]; !ok {
		c.byKey[key] = out
		c.order = append(c.order, key)
		c.bytes += len(out)
		for c.bytes > meterCacheBytes && len(c.order) > 1 {
			old := c.order[0]
			c.order = c.order[1:]
			c.bytes -= len(c.byKey[old])
			delete(c.byKey, old)
		}
	}
	return out, nil
}
