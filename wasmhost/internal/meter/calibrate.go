package meter

import (
	"context"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero"
)

// SliceTime is the guest time one slice should take. A guest returns to
// Go at least once per slice, so this bounds how long it can hold up a
// stop-the-world GC pause. It is 1 ms, a tenth of the 10 ms worst stall
// the design allows, leaving room for code that is up to 10x slower per
// unit than the calibration loop (divisions, cache misses); the yield
// itself costs well under a microsecond, 0.1% of a slice.
const SliceTime = time.Millisecond

// Slice bounds, whatever calibration says.
const (
	MinSlice = 1 << 14
	MaxSlice = 1 << 26
)

// Rate converts units to time on this machine.
type Rate struct {
	UnitsPerSecond float64
}

// Units is the number of units a guest runs in d.
func (r Rate) Units(d time.Duration) int64 { return int64(r.UnitsPerSecond * d.Seconds()) }

// Duration is the guest time units take.
func (r Rate) Duration(units int64) time.Duration {
	if r.UnitsPerSecond <= 0 {
		return 0
	}
	return time.Duration(float64(units) / r.UnitsPerSecond * float64(time.Second))
}

// Slice is the calibrated slice: the units of SliceTime, within
// [MinSlice, MaxSlice].
func (r Rate) Slice() int64 { return min(max(r.Units(SliceTime), MinSlice), MaxSlice) }

// calibrationWasm is a module with one export, run(n) -> i32, a loop of n
// iterations of 22 instructions mixing locals, arithmetic, a load and a
// store: ordinary guest code, not a best case.
func calibrationWasm() []byte {
	body := []byte{
		0x01, 0x02, typeI32, // locals: i, x
		opLoop, 0x40,
		opLocalGet, 2, opLocalGet, 1, opI32Const, 0xfc, 0x07, 0x71, // x, i & 1020
		0x28, 0x02, 0x00, 0x6a, // i32.load, i32.add
		opI32Const, 0x1f, 0x6c, opLocalSet, 2, // * 31 → x
		opLocalGet, 1, opI32Const, 0xfc, 0x07, 0x71, opLocalGet, 2,
		0x36, 0x02, 0x00, // i32.store
		opLocalGet, 1, opI32Const, 1, 0x6a, opLocalTee, 1,
		opLocalGet, 0, 0x49, opBrIf, 0, // i+1 < n
		opEnd,
		opLocalGet, 2,
		opEnd,
	}
	code := appendU32([]byte{1}, uint32(len(body)))
	code = append(code, body...)
	b := append([]byte(nil), header...)
	b = appendSection(b, secType, []byte{1, 0x60, 1, typeI32, 1, typeI32})
	b = appendSection(b, secFunction, []byte{1, 0})
	b = appendSection(b, secMemory, []byte{1, 0, 1})
	b = appendSection(b, secExport, []byte{1, 3, 'r', 'u', 'n', kindFunc, 0})
	return appendSection(b, secCode, code)
}

// Calibrate measures how many units a metered guest runs per second on
// this machine: it meters and runs a small built-in loop (about 10 ms,
// best of three, in its own runtime) and divides the units it was
// charged by the time it took. Hosts call it once at start-up and derive
// their slice (Rate.Slice) and their CPU-used metric (Rate.Duration)
// from it.
func Calibrate(ctx context.Context) (Rate, error) {
	wasm, err := Instrument(calibrationWasm(), Config{})
	if err != nil {
		return Rate{}, fmt.Errorf("meter: calibrate: %w", err)
	}
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer r.Close(ctx)
	if err := Instantiate(ctx, r); err != nil {
		return Rate{}, err
	}
	b := &Budget{}
	mod, err := r.InstantiateWithConfig(WithBudget(ctx, b), wasm, wazero.NewModuleConfig().WithName("meter-calibration"))
	if err != nil {
		return Rate{}, fmt.Errorf("meter: calibrate: %w", err)
	}
	fuel, err := Fuel(mod)
	if err != nil {
		return Rate{}, err
	}
	run := mod.ExportedFunction("run")
	n := uint64(1 << 16)
	best := 0.0
	for i := 0; i < 3; {
		b.Start(fuel)
		t0 := time.Now()
		if _, err := run.Call(WithBudget(ctx, b), n); err != nil {
			return Rate{}, fmt.Errorf("meter: calibrate: %w", err)
		}
		d := time.Since(t0)
		if d < 5*time.Millisecond && n < 1<<30 {
			n *= 4 // too short to time well: grow first
			continue
		}
		if rate := float64(b.Used(fuel)) / d.Seconds(); rate > best {
			best = rate
		}
		i++
	}
	return Rate{UnitsPerSecond: best}, nil
}
