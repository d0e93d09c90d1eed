// Package meter makes plugin CPU limits cheap: it rewrites a guest module
// so the guest counts its own work and hands control back to the host at
// regular points, instead of relying on wazero's WithCloseOnContextDone,
// which in v1.12.0 costs an exit to Go on every loop back-edge (10–40x on
// loop-heavy calls).
//
// Instrument decodes a Wasm 2.0 module, inserts charges against a fuel
// global at function entries, loop headers and before length-driven bulk
// operations, and re-encodes it. When the fuel of a slice runs out the
// guest calls the one added import, ImportModule.YieldName. That call
// returns to Go, which is a safe point for the garbage collector, so a
// long-running guest never holds up a stop-the-world pause for more than
// one slice; and it is where the host enforces the callback's wall-clock
// limit: the yield function reads the Budget carried in the call's
// context (WithBudget), then either grants another slice or fails the
// call. The context carries no Done channel, so wazero adds no
// per-call goroutine.
package meter
