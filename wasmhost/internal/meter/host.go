package meter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Errors a metered call fails with. wazero wraps them; test with errors.Is.
var (
	// ErrCPULimit: the callback ran past its Budget.
	ErrCPULimit = errors.New("meter: cpu limit exceeded")
	// ErrNoBudget: a metered guest ran out of fuel in a call whose
	// context has no Budget (the host forgot WithBudget). Refusing is the
	// only safe answer: the guest would otherwise be unbounded.
	ErrNoBudget = errors.New("meter: metered guest ran without a budget (context lacks meter.WithBudget)")
)

// DefaultSlice is the slice used before calibration: 2^20 units, ~0.3–1 ms
// of guest code on the machines measured (see Calibrate).
const DefaultSlice = 1 << 20

// Budget is the CPU allowance of one guest call. It is not safe for
// concurrent use: one Budget per call, used on the calling goroutine (the
// yield function runs there).
type Budget struct {
	// Deadline is the callback's wall-clock limit (cpu_limit). The first
	// yield at or after it fails the call with ErrCPULimit, so a call
	// overruns it by at most one slice. Zero: no wall-clock limit.
	Deadline time.Time
	// Limit, if positive, is a wall-clock limit counted from the call's
	// first yield: a call runs at most one slice, plus Limit, plus one
	// more slice. Unlike Deadline it costs no clock read per call (a
	// time.Now is ~80 ns here, 7% of a 1 KB scan): set it once per
	// instance; only calls that run longer than a slice read the clock.
	Limit time.Duration
	// MaxUnits, if positive, also caps the units granted in the call; a
	// charge that would exceed it fails the call at once, before the work
	// it pays for (e.g. a huge memory.fill).
	MaxUnits int64
	// Slice is the number of units granted per yield; 0 means
	// DefaultSlice. Rate.Slice gives the calibrated value.
	Slice int64

	granted int64
	yields  int64
	limitAt time.Time // the first yield's time plus Limit
}

func (b *Budget) slice() int64 {
	if b.Slice > 0 {
		return b.Slice
	}
	return DefaultSlice
}

// Start arms the budget for a call on an instance whose fuel global is
// fuel (see Fuel): it grants the first slice, so a short call never
// yields.
func (b *Budget) Start(fuel api.MutableGlobal) {
	s := b.slice()
	if b.MaxUnits > 0 && s > b.MaxUnits {
		s = b.MaxUnits
	}
	b.granted, b.yields = s, 0
	fuel.Set(uint64(s))
}

// Used reports the units the call consumed: every unit granted (slices,
// including the first) minus the fuel left. Call it after the call
// returned, with the same fuel global as Start.
func (b *Budget) Used(fuel api.MutableGlobal) int64 {
	left := int64(fuel.Get())
	if left < 0 {
		left = 0
	}
	if left > b.granted {
		return 0
	}
	return b.granted - left
}

// Yields reports how many times the guest called yield in this call.
func (b *Budget) Yields() int64 { return b.yields }

type budgetKey struct{}

// WithBudget returns a context carrying b for a metered call. It is a
// plain context.WithValue: no Done channel, so wazero (with
// WithCloseOnContextDone(false)) starts no watcher goroutine per call.
func WithBudget(ctx context.Context, b *Budget) context.Context {
	return context.WithValue(ctx, budgetKey{}, b)
}

// BudgetFrom returns the Budget in ctx, if any.
func BudgetFrom(ctx context.Context) (*Budget, bool) {
	b, ok := ctx.Value(budgetKey{}).(*Budget)
	return b, ok && b != nil
}

// Fuel returns the fuel global of a metered instance.
func Fuel(mod api.Module) (api.MutableGlobal, error) {
	g, ok := mod.ExportedGlobal(FuelGlobal).(api.MutableGlobal)
	if !ok {
		return nil, fmt.Errorf("meter: module %q exports no mutable %q: not metered", mod.Name(), FuelGlobal)
	}
	return g, nil
}

// Instantiate registers the host module ImportModule, with the yield
// function, in r. Call it once per runtime, before instantiating any
// metered module.
func Instantiate(ctx context.Context, r wazero.Runtime) error {
	_, err := r.NewHostModuleBuilder(ImportModule).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(yield), nil, nil).
		WithName(YieldName).
		Export(YieldName).
		Instantiate(ctx)
	if err != nil {
		return fmt.Errorf("meter: instantiate host module %q: %w", ImportModule, err)
	}
	return nil
}

// yield runs when a guest's fuel went negative. Returning to Go here is
// what lets a stop-the-world pause proceed; failing here (panic with an
// error, which wazero turns into the call's error) is how a call ends.
func yield(ctx context.Context, mod api.Module, _ []uint64) {
	b, ok := BudgetFrom(ctx)
	if !ok {
		panic(ErrNoBudget)
	}
	g, err := Fuel(mod)
	if err != nil {
		panic(err)
	}
	f := int64(g.Get())
	if f >= 0 {
		return
	}
	b.yields++
	if !b.Deadline.IsZero() || b.Limit > 0 {
		now := time.Now()
		if !b.Deadline.IsZero() && !now.Before(b.Deadline) {
			panic(ErrCPULimit)
		}
		if b.Limit > 0 {
			if b.yields == 1 {
				b.limitAt = now.Add(b.Limit)
			} else if !now.Before(b.limitAt) {
				panic(ErrCPULimit)
			}
		}
	}
	if f < -(1 << 50) { // no charge is this large; the global was tampered with
		panic(ErrCPULimit)
	}
	s := b.slice()
	grant := (-f/s + 1) * s
	if b.MaxUnits > 0 && b.granted+grant > b.MaxUnits {
		if b.granted-f > b.MaxUnits { // even the debt exceeds the cap
			panic(ErrCPULimit)
		}
		grant = b.MaxUnits - b.granted
	}
	b.granted += grant
	g.Set(uint64(f + grant))
}
