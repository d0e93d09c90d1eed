// Package meter makes plugin CPU limits cheap: it rewrites a guest module
// so the guest counts its own work and hands control back to the host at
// regular points, instead of relying on wazero's WithCloseOnContextDone,
// which in v1.12.0 costs a goroutine per call and an exit to Go on every
// loop back-edge (7–21x on a 1 KB scan, see BenchmarkScan1KSideBySide).
//
// # The pass
//
// Instrument decodes a Wasm 2.0 module (every section and instruction,
// SIMD, bulk memory, reference types and multi-value included), inserts
// charges against a fuel counter at function entries, loop headers and
// before length-driven bulk operations, and re-encodes it. A unit is one
// instruction of the guest's own code; memory.fill/copy/init cost one
// unit per 16 bytes and table bulk operations one per element, charged
// from their length operand before they run. Each instruction is charged
// at the header of its innermost loop (or at function entry), so one
// check per loop iteration pays for the whole iteration. Within a
// function the counter is a local (a register); it meets the exported
// global FuelGlobal around calls and exits. Small leaf functions carry no
// fuel code: their callers pay for them.
//
// # Why the check looks the way it does
//
// The check is a subtract, a compare and a branch on a register; the
// yield call behind it is cold. Two things decide what it costs in
// wazero's compiled code (read off its machine code, backend debug
// output):
//
//   - Where the call sits in the control flow. wazero's register
//     allocator starts a merge block from the registers of the first
//     predecessor it allocated; with the call in an if's then-arm, a loop
//     without other calls reloaded every loop-carried local from the
//     stack on each iteration. The call now sits in the else-arm of an
//     if taken while the fuel is not negative, so only the cold path
//     reloads (appendCheck; in regions that make calls anyway the
//     then-arm form is cheaper and kept).
//   - How often it runs. On a loop of a few instructions (the WAT scan:
//     ~3 cycles per byte) even the bare check is ~0.7 cycles, 23%. Small
//     innermost loops (at most 64 instructions, no calls) are therefore
//     unrolled 4x under one check (unrollLoops): copies run forward, so
//     each instruction still runs at most once per charge.
//
// Keeping the fuel in a global (a load and a store through the module
// instance per check) cost more; a per-loop iteration counter costs the
// same as the fuel check it would replace.
//
// # Why a yield import, not only a budget
//
// When the fuel of a slice runs out, the guest calls the one added
// import, ImportModule.YieldName. That call returns to Go, where the
// garbage collector can stop the goroutine, so a long-running honest
// guest never holds up a collection for more than one slice (a guest in
// compiled code cannot be preempted otherwise). It is also where the
// host enforces the callback's wall-clock limit (cpu_limit): the yield
// function reads the Budget carried in the call's context (WithBudget, a
// plain value: no Done channel, no watcher goroutine) and either grants
// another slice or fails the call with ErrCPULimit. A budget alone (no
// yield) would have to be a few milliseconds per callback to keep GC
// stalls short, and would make cpu_limit a sum of such budgets with no
// way to return to Go in between.
//
// # Slice size
//
// SliceTime is 1 ms: Calibrate measures units per second at start-up (a
// built-in metered loop; ~2.5e9 units/s on the development machine, so a
// slice of ~2.5M units), and Rate.Slice converts. Code slower per unit
// than the calibration loop stretches a slice; the 10 ms worst-stall
// target leaves room for 10x. A yield costs well under a microsecond, so
// slices cost <0.1%. The deadline is checked at each yield: a call
// overruns cpu_limit by at most one slice.
//
// # Cost
//
// BenchmarkScan1KSideBySide (the modes interleaved, best batch of 100
// calls; the 2-core development machine at load average 5–8) measured,
// per 1 KB-scan call, metered/unmetered: C 1.07x, Go 1.12x, Rust 1.02x,
// WAT 1.10x with Budget.Limit; 1.10x, 1.14x, 1.07x, 1.14x with a
// per-call Deadline (a time.Now, ~40–80 ns here); WithCloseOnContextDone:
// 6.7x, 9.3x, 8.3x, 21x. (Before the two changes above: 1.10x, 1.14x,
// 1.20x, 1.50x with a Deadline.) The Go figure depends on where wazero
// happens to place main.scan: shifting it by padding an unrelated earlier
// function, with not one byte of its code changed, measured 1.14x, 1.24x
// and 1.39x (wazero aligns functions to 16 bytes and nothing inside
// them). Instrument takes 2–5% of wazero's compile time on the Go example
// (BenchmarkTransform).
//
// # Host integration (package wasmhost)
//
//  1. Compile: wasm, err := Instrument(wasm, Config{}); an error names the
//     unsupported construct (fall back to WithCloseOnContextDone, or
//     refuse the plugin).
//  2. Runtime: WithCloseOnContextDone(false); Instantiate(ctx, runtime)
//     once, before the guest.
//  3. Instantiate the guest with WithBudget(ctx, &Budget{Deadline: ...})
//     in the context: a start section runs there, and a metered guest
//     without a budget fails with ErrNoBudget rather than run unbounded.
//  4. Per instance: fuel, _ := Fuel(mod); b := &Budget{Slice: rate.Slice()};
//     bctx := WithBudget(ctx, b).
//  5. Per call: b.Start(fuel); fn.Call(bctx, ...); then b.Used(fuel)
//     units (rate.Duration for seconds) feed the CPU-used metric.
//     errors.Is(err, ErrCPULimit) means the limit ended the call. The
//     wall-clock limit is either b.Limit = cpuLimit, set once (counted
//     from the call's first yield, so no clock read per call), or
//     b.Deadline = time.Now().Add(cpuLimit) per call; b.MaxUnits caps
//     the units.
//
// Known limits: after a trap, the units since the function last wrote
// the counter back are not counted (the instance is discarded after a
// trap anyway); a leaf function called directly by the host runs at most
// 256 instructions uncharged; an unrolled loop's exit may have paid for
// up to 3 iterations it did not run.
package meter
