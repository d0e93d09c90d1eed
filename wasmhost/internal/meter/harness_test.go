package meter

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// instance is a guest instantiated in its own runtime with a recording
// host: every host call it makes is appended to log, so two runs (metered
// and unmetered) can be compared call by call.
type instance struct {
	rt      wazero.Runtime
	mod     api.Module
	log     []string
	metered bool
	// hasMemory: mod.Memory() is a non-nil interface even without one.
	hasMemory bool
	fuel      api.MutableGlobal
	budget    *Budget
}

// genvWasm is a module exporting an immutable i32 global "g" = 1, the
// global that features.wat imports (wazero host modules export only
// functions).
func genvWasm() []byte {
	b := append([]byte(nil), header...)
	b = appendSection(b, secGlobal, []byte{1, typeI32, 0, opI32Const, 1, opEnd})
	return appendSection(b, secExport, []byte{1, 1, 'g', kindGlobal, 0})
}

func newInstance(t testing.TB, ctx context.Context, wasm []byte, metered bool, rc wazero.RuntimeConfig) *instance {
	t.Helper()
	m, err := Decode(wasm)
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{metered: metered, budget: &Budget{}, hasMemory: m.section(secMemory) != nil}
	for _, im := range m.imports {
		in.hasMemory = in.hasMemory || im.kind == kindMemory
	}
	if rc == nil {
		rc = wazero.NewRuntimeConfigCompiler()
	}
	in.rt = wazero.NewRuntimeWithConfig(ctx, rc)
	t.Cleanup(func() { in.rt.Close(context.Background()) })
	wasi_snapshot_preview1.MustInstantiate(ctx, in.rt)
	if metered {
		if err := Instantiate(ctx, in.rt); err != nil {
			t.Fatal(err)
		}
		if wasm, err = Instrument(wasm, Config{}); err != nil {
			t.Fatal(err)
		}
	}
	hosts := map[string]wazero.HostModuleBuilder{}
	for _, im := range m.imports {
		switch {
		case im.module == "wasi_snapshot_preview1":
			continue
		case im.module == "genv":
			if _, err := in.rt.InstantiateWithConfig(ctx, genvWasm(), wazero.NewModuleConfig().WithName("genv")); err != nil {
				t.Fatal(err)
			}
			continue
		case im.kind != kindFunc:
			t.Fatalf("test harness cannot provide import %s.%s of kind %d", im.module, im.name, im.kind)
		}
		r := &reader{b: im.desc[1:]}
		ti, _ := r.u32()
		ft := m.types[ti]
		hb, ok := hosts[im.module]
		if !ok {
			hb = in.rt.NewHostModuleBuilder(im.module)
			hosts[im.module] = hb
		}
		name := im.module + "." + im.name
		nres := len(ft.results)
		// Getters (and dequeue) answer NotFound; everything else succeeds
		// with zeros.
		ret := uint64(0)
		if strings.HasPrefix(im.name, "proxy_get_") || strings.HasPrefix(im.name, "proxy_dequeue") {
			ret = 1
		}
		params, results := valueTypes(ft.params), valueTypes(ft.results)
		hb.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
			args := slices.Clone(stack[:len(params)])
			for i, p := range params {
				if p == api.ValueTypeI32 || p == api.ValueTypeF32 {
					args[i] = uint64(uint32(args[i])) // upper bits are undefined
				}
			}
			in.log = append(in.log, fmt.Sprintf("host %s%v", name, args))
			for i := 0; i < nres; i++ {
				stack[i] = ret
			}
		}), params, results).Export(im.name)
	}
	names := make([]string, 0, len(hosts))
	for n := range hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := hosts[n].Instantiate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cm, err := in.rt.CompileModule(ctx, wasm)
	if err != nil {
		t.Fatalf("compile (metered=%v): %v", metered, err)
	}
	mc := wazero.NewModuleConfig().WithName("guest").WithStartFunctions()
	in.budget.Slice = 1 << 16 // small slices: many yields, exercised
	mod, err := in.rt.InstantiateModule(WithBudget(ctx, in.budget), cm, mc)
	if err != nil {
		t.Fatalf("instantiate (metered=%v): %v", metered, err)
	}
	in.mod = mod
	if metered {
		if in.fuel, err = Fuel(mod); err != nil {
			t.Fatal(err)
		}
	}
	return in
}

func valueTypes(b []byte) []api.ValueType {
	out := make([]api.ValueType, len(b))
	for i, c := range b {
		out[i] = api.ValueType(c)
	}
	return out
}

// call runs an export, recording its outcome and the memory it left.
func (in *instance) call(ctx context.Context, name string, args ...uint64) ([]uint64, error) {
	f := in.mod.ExportedFunction(name)
	if f == nil {
		return nil, fmt.Errorf("no export %q", name)
	}
	if n := len(f.Definition().ParamTypes()); len(args) != n {
		args = append(args, make([]uint64, max(n-len(args), 0))...)[:n]
	}
	if in.metered {
		// A deadline, so a guest that never returns fails the metered
		// run (which goes first) instead of hanging the unmetered one.
		in.budget.Deadline = time.Now().Add(5 * time.Second)
		in.budget.Start(in.fuel)
		ctx = WithBudget(ctx, in.budget)
	}
	res, err := f.Call(ctx, args...)
	entry := fmt.Sprintf("call %s%v -> %v", name, args, res)
	if err != nil {
		// Only the first line: stack traces name functions by index,
		// which metering shifts.
		entry = fmt.Sprintf("call %s%v -> error %s", name, args, strings.SplitN(err.Error(), "\n", 2)[0])
	}
	in.log = append(in.log, entry)
	if mem := in.mod.Memory(); in.hasMemory {
		b, _ := mem.Read(0, mem.Size())
		in.log = append(in.log, fmt.Sprintf("memory %d %x", mem.Size(), sha256.Sum256(b)))
	}
	return res, err
}

// script drives a guest through a deterministic sequence of calls:
// the proxy-wasm lifecycle if it is a plugin, then every other export.
func (in *instance) script(ctx context.Context, skip map[string]bool) {
	exports := in.mod.ExportedFunctionDefinitions()
	has := func(n string) bool { _, ok := exports[n]; return ok && !skip[n] }
	if has("_initialize") {
		in.call(ctx, "_initialize")
	}
	if has("buffer") {
		res, err := in.call(ctx, "buffer")
		if err == nil && len(res) == 1 {
			in.mod.Memory().Write(uint32(res[0]), scanInput())
		}
	}
	proxy := [][]any{
		{"proxy_on_context_create", 1, 0}, {"proxy_on_vm_start", 1, 0}, {"proxy_on_configure", 1, 0},
		{"proxy_on_context_create", 2, 1}, {"proxy_on_request_headers", 2, 2, 0},
		{"proxy_on_request_body", 2, 16, 1}, {"proxy_on_response_headers", 2, 2, 0},
		{"proxy_on_response_body", 2, 16, 1}, {"proxy_on_log", 2}, {"proxy_on_done", 2},
		{"proxy_on_delete", 2}, {"proxy_on_tick", 1}, {"proxy_on_memory_allocate", 100},
	}
	done := map[string]bool{"_initialize": true, "_start": true, "buffer": true}
	for _, c := range proxy {
		name := c[0].(string)
		done[name] = true
		if has(name) {
			args := make([]uint64, len(c)-1)
			for i, a := range c[1:] {
				args[i] = uint64(a.(int))
			}
			in.call(ctx, name, args...)
		}
	}
	var rest []string
	for n := range exports {
		if !done[n] && !skip[n] && !strings.HasPrefix(n, "proxy_abi_version") {
			rest = append(rest, n)
		}
	}
	slices.Sort(rest)
	for _, n := range rest {
		for _, arg := range []uint64{0, 3, 40, 1024} {
			in.call(ctx, n, arg, arg/2+1, 9)
		}
	}
}

// scanInput is a 1 KB HTTP-header-like buffer.
func scanInput() []byte {
	var b []byte
	for i := 0; len(b) < 1024; i++ {
		b = fmt.Appendf(b, "x-header-%03d: value-%d\r\n", i, i*i)
	}
	return b[:1024]
}
