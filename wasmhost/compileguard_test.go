package wasmhost

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmgate/wasmgate/gateway/config"
)

var wasmHeader = []byte{0, 'a', 's', 'm', 1, 0, 0, 0}

func section(id byte, body []byte) []byte {
	return append(append([]byte{id}, uleb(uint32(len(body)))...), body...)
}

func uleb(v uint32) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

// hugeNames is a name section that declares 2^31-1 function names and
// holds none: wazero v1.12.0 would size a map from the count.
func hugeNames() []byte {
	sub := uleb(1<<31 - 1)
	body := append([]byte{4, 'n', 'a', 'm', 'e', 1}, uleb(uint32(len(sub)))...)
	return section(0, append(body, sub...))
}

// hostileModule has one function whose type index is out of range (the
// meter refuses it; wazero v1.12.0 may panic on it) and a name section
// that would make wazero allocate without bound.
func hostileModule() []byte {
	m := append([]byte(nil), wasmHeader...)
	m = append(m, section(1, []byte{1, 0x60, 0, 0})...) // one type: () -> ()
	m = append(m, section(3, []byte{1, 7})...)          // one function of type 7
	m = append(m, section(10, []byte{1, 2, 0, 0x0b})...)
	return append(m, hugeNames()...)
}

// A module the meter refuses is refused by default with the meter's
// reason, and with cpu_fallback: watchdog it reaches wazero without the
// name section that would exhaust memory, and wazero's verdict on the
// rest is an error, not a crash of the host. `gateway plugins check`
// survives it too.
func TestModuleTheMeterRefuses(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hostile.wasm")
	if err := os.WriteFile(file, hostileModule(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ fallback, want, not string }{
		{config.CPUFallbackRefuse, "refused by the CPU-limit meter", ""},
		// wazero's own verdict: the meter's refusal was not the answer.
		{config.CPUFallbackWatchdog, "compile", "refused by the CPU-limit meter"},
	} {
		t.Run(tc.fallback, func(t *testing.T) {
			p := plugin("h", file, func(p *config.Plugin) { p.CPUFallback = tc.fallback })
			h, err := New(context.Background(), []config.Plugin{p}, Options{})
			if err == nil {
				h.Close(context.Background())
				t.Fatal("hostile module accepted")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `"h"`) ||
				(tc.not != "" && strings.Contains(err.Error(), tc.not)) {
				t.Fatalf("err = %v, want it to name the plugin and %q", err, tc.want)
			}
		})
	}
	var out bytes.Buffer
	if err := CheckFile(&out, file); err == nil || !strings.Contains(out.String(), "verdict: BAD") {
		t.Fatalf("CheckFile: %v\n%s", err, out.String())
	}
}
