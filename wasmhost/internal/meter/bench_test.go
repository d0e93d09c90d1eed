package meter

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

// scanGuests are the 1 KB-scan guests, one per language.
func scanGuests() []guest {
	return []guest{
		repoGuest(wasmbuild.C, "wasmhost", "internal", "meter", "testdata", "scan.c"),
		repoGuest(wasmbuild.Go, "wasmhost", "internal", "meter", "testdata", "goguest"),
		repoGuest(wasmbuild.Rust, "wasmhost", "internal", "meter", "testdata", "rustguest"),
		watGuest("scan.wat"),
	}
}

// BenchmarkScan1K compares one 1 KB-scan call per language in three
// modes:
//
//   - unmetered: wazero's default runtime, no limit at all (the floor);
//   - metered: Instrument + WithCloseOnContextDone(false); the budget's
//     wall-clock Limit is set once per instance, and per call the host
//     arms the budget (the context carrying the Budget is made once per
//     instance);
//   - metered-deadline: the same with a per-call Deadline instead of
//     Limit, as wasmhost does (it reads the clock per call anyway, to
//     time calls): one time.Now more per call;
//   - closeondone: the unmetered module on a runtime with
//     WithCloseOnContextDone(true) and a per-call context.WithTimeout, the
//     only limit wazero offers.
func BenchmarkScan1K(b *testing.B) {
	ctx := context.Background()
	for _, g := range scanGuests() {
		wasm := g.wasm(b)
		for _, mode := range []string{"unmetered", "metered", "metered-deadline", "closeondone"} {
			b.Run(g.name+"/"+mode, func(b *testing.B) {
				in, scan := newScanInstance(b, ctx, wasm, mode)
				var res []uint64
				var err error
				budget := &Budget{Limit: time.Second}
				bctx := WithBudget(ctx, budget)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					switch mode {
					case "unmetered":
						res, err = scan.Call(ctx, 1024)
					case "metered":
						budget.Start(in.fuel)
						res, err = scan.Call(bctx, 1024)
					case "metered-deadline":
						budget.Deadline = time.Now().Add(time.Second)
						budget.Start(in.fuel)
						res, err = scan.Call(bctx, 1024)
					case "closeondone":
						cctx, cancel := context.WithTimeout(ctx, time.Second)
						res, err = scan.Call(cctx, 1024)
						cancel()
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				want := uint64(0)
				for _, c := range scanInput() {
					if c == '\n' || c == ':' {
						want++
					}
				}
				if res[0] != want {
					b.Fatalf("scan = %d, want %d", res[0], want)
				}
			})
		}
	}
}

// newScanInstance instantiates a scan guest for a BenchmarkScan1K mode,
// with the 1 KB input in its buffer, and returns it with its scan export.
func newScanInstance(b *testing.B, ctx context.Context, wasm []byte, mode string) (*instance, api.Function) {
	var rc wazero.RuntimeConfig
	if mode == "closeondone" {
		rc = wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(true)
	}
	in := newInstance(b, ctx, wasm, strings.HasPrefix(mode, "metered"), rc)
	if exp := in.mod.ExportedFunction("_initialize"); exp != nil {
		if _, err := exp.Call(WithBudget(ctx, &Budget{})); err != nil {
			b.Fatal(err)
		}
	}
	res, err := in.mod.ExportedFunction("buffer").Call(WithBudget(ctx, &Budget{}))
	if err != nil {
		b.Fatal(err)
	}
	in.mod.Memory().Write(uint32(res[0]), scanInput())
	return in, in.mod.ExportedFunction("scan")
}

// BenchmarkTransform compares Instrument with wazero's compilation of the
// same Go guest (the largest guests we have): the target is
// transform ≤ 10% of compile.
func BenchmarkTransform(b *testing.B) {
	ctx := context.Background()
	for _, g := range []guest{
		repoGuest(wasmbuild.Go, "wasmhost", "internal", "meter", "testdata", "goguest"),
		repoGuest(wasmbuild.Go, "examples", "go"),
	} {
		wasm := g.wasm(b)
		b.Run(g.name+"/instrument", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(wasm)))
			for i := 0; i < b.N; i++ {
				if _, err := Instrument(wasm, Config{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		metered, err := Instrument(wasm, Config{})
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range []struct {
			name string
			wasm []byte
		}{{"compile", wasm}, {"compile-metered", metered}} {
			b.Run(g.name+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
					if _, err := rt.CompileModule(ctx, c.wasm); err != nil {
						b.Fatal(err)
					}
					rt.Close(ctx)
				}
			})
		}
	}
}

// BenchmarkScan1KSideBySide runs the four modes of BenchmarkScan1K
// interleaved, in batches of 100 calls, and reports each mode's best
// batch (ns per call) and the ratios to unmetered. On a shared, loaded
// machine, interleaving and taking the best batch keeps a neighbour's
// burst from landing on one mode only.
func BenchmarkScan1KSideBySide(b *testing.B) {
	ctx := context.Background()
	modes := []string{"unmetered", "metered", "metered-deadline", "closeondone"}
	for _, g := range scanGuests() {
		wasm := g.wasm(b)
		b.Run(g.name, func(b *testing.B) {
			type runner struct {
				call func() error
			}
			var rs []runner
			for _, mode := range modes {
				in, scan := newScanInstance(b, ctx, wasm, mode)
				budget := &Budget{Limit: time.Second}
				bctx := WithBudget(ctx, budget)
				switch mode {
				case "unmetered":
					rs = append(rs, runner{func() error { _, err := scan.Call(ctx, 1024); return err }})
				case "metered":
					rs = append(rs, runner{func() error {
						budget.Start(in.fuel)
						_, err := scan.Call(bctx, 1024)
						return err
					}})
				case "metered-deadline":
					budget.Limit = 0
					rs = append(rs, runner{func() error {
						budget.Deadline = time.Now().Add(time.Second)
						budget.Start(in.fuel)
						_, err := scan.Call(bctx, 1024)
						return err
					}})
				case "closeondone":
					rs = append(rs, runner{func() error {
						cctx, cancel := context.WithTimeout(ctx, time.Second)
						_, err := scan.Call(cctx, 1024)
						cancel()
						return err
					}})
				}
			}
			const batch = 100
			best := make([]time.Duration, len(rs))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for m, r := range rs {
					t0 := time.Now()
					for j := 0; j < batch; j++ {
						if err := r.call(); err != nil {
							b.Fatal(err)
						}
					}
					if d := time.Since(t0); best[m] == 0 || d < best[m] {
						best[m] = d
					}
				}
			}
			per := func(m int) float64 { return float64(best[m].Nanoseconds()) / batch }
			b.ReportMetric(per(0), "unmetered-ns/call")
			b.ReportMetric(per(1), "metered-ns/call")
			b.ReportMetric(per(2), "metered-deadline-ns/call")
			b.ReportMetric(per(3), "closeondone-ns/call")
			b.ReportMetric(per(1)/per(0), "metered/unmetered")
			b.ReportMetric(per(2)/per(0), "metered-deadline/unmetered")
			b.ReportMetric(per(3)/per(0), "closeondone/unmetered")
		})
	}
}
