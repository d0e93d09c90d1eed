package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmgate/wasmgate/wasmhost/internal/meter"
)

// ABI markers a plugin may export (the official Go SDK declares 0.2.0).
var abiMarkers = []string{"proxy_abi_version_0_2_1", "proxy_abi_version_0_2_0"}

// callbackSigs are the parameter and result counts of the callbacks the
// host calls; an export with another shape is refused at load time rather
// than failing on the first request.
var callbackSigs = map[string][2]int{
	"proxy_on_memory_allocate":    {1, 1},
	"malloc":                      {1, 1},
	"proxy_on_context_create":     {2, 0},
	"proxy_on_vm_start":           {2, 1},
	"proxy_on_configure":          {2, 1},
	"proxy_on_request_headers":    {3, 1},
	"proxy_on_request_body":       {3, 1},
	"proxy_on_response_headers":   {3, 1},
	"proxy_on_response_body":      {3, 1},
	"proxy_on_done":               {1, 1},
	"proxy_on_log":                {1, 0},
	"proxy_on_delete":             {1, 0},
	"proxy_on_tick":               {1, 0},
	"proxy_on_http_call_response": {5, 0},
	"proxy_on_queue_ready":        {2, 0},
	"_initialize":                 {0, 0},
	"_start":                      {0, 0},
}

// validate checks a compiled module against what this host provides and
// needs. It returns the ABI version the module declares.
func validate(rt wazero.Runtime, mod wazero.CompiledModule) (string, error) {
	var problems []string
	exports := mod.ExportedFunctions()
	abi := ""
	for _, mk := range abiMarkers {
		if _, ok := exports[mk]; ok {
			abi = strings.TrimPrefix(mk, "proxy_abi_version_")
			abi = "v" + strings.ReplaceAll(abi, "_", ".")
			break
		}
	}
	if abi == "" {
		problems = append(problems, "no proxy-wasm ABI marker export (proxy_abi_version_0_2_1 or proxy_abi_version_0_2_0)")
	}
	if _, ok := mod.ExportedMemories()["memory"]; !ok {
		problems = append(problems, `no exported memory named "memory"`)
	}
	if exports["proxy_on_memory_allocate"] == nil && exports["malloc"] == nil {
		problems = append(problems, "no allocator export (proxy_on_memory_allocate or malloc)")
	}
	for name, sig := range callbackSigs {
		d := exports[name]
		if d == nil {
			continue
		}
		if len(d.ParamTypes()) != sig[0] || len(d.ResultTypes()) != sig[1] {
			problems = append(problems, fmt.Sprintf("export %s has %d params and %d results, want %d and %d",
				name, len(d.ParamTypes()), len(d.ResultTypes()), sig[0], sig[1]))
		}
	}
	if len(mod.ImportedMemories()) > 0 {
		problems = append(problems, "imports a memory: plugins must define and export their own")
	}
	provided := map[string]map[string]api.FunctionDefinition{}
	for _, modName := range []string{"env", "wasi_snapshot_preview1", meter.ImportModule} {
		if hm := rt.Module(modName); hm != nil {
			provided[modName] = hm.ExportedFunctionDefinitions()
		}
	}
	for _, imp := range mod.ImportedFunctions() {
		modName, name, _ := imp.Import()
		defs, ok := provided[modName]
		if !ok {
			problems = append(problems, fmt.Sprintf("import %s.%s: module %q is not provided (only env and wasi_snapshot_preview1)", modName, name, modName))
			continue
		}
		def, ok := defs[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("import %s.%s is not provided by this host", modName, name))
			continue
		}
		if !sameTypes(def.ParamTypes(), imp.ParamTypes()) || !sameTypes(def.ResultTypes(), imp.ResultTypes()) {
			problems = append(problems, fmt.Sprintf("import %s.%s has signature %s, host provides %s", modName, name, sig(imp), sig(def)))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return abi, errors.New("invalid plugin: " + strings.Join(problems, "; "))
	}
	return abi, nil
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sig(d api.FunctionDefinition) string {
	names := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return strings.Join(s, ",")
	}
	return "(" + names(d.ParamTypes()) + ")->(" + names(d.ResultTypes()) + ")"
}

// CheckFile loads a plugin file the way the host does (compile, validate
// imports and exports) without running it, and writes a report: ABI
// version, exports, imports and a verdict. It returns an error for a
// module the host would refuse.
func CheckFile(w io.Writer, path string) error {
	wasm, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(w, "verdict: BAD (%v)\n", err)
		return err
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer rt.Close(ctx)
	if err := instantiateEnv(ctx, rt); err != nil {
		return err
	}
	if err := instantiateWASI(ctx, rt); err != nil {
		return err
	}
	fmt.Fprintf(w, "file: %s (%d bytes)\n", path, len(wasm))
	safe, err := meter.StripCustomSections(wasm)
	if err != nil {
		fmt.Fprintf(w, "verdict: BAD (%v)\n", err)
		return fmt.Errorf("check %s: %w", path, err)
	}
	mod, err := compileGuarded(ctx, rt, safe)
	if err != nil {
		fmt.Fprintf(w, "verdict: BAD (compile: %v)\n", err)
		return fmt.Errorf("check %s: compile: %w", path, err)
	}
	defer mod.Close(ctx)
	abi, verr := validate(rt, mod)
	if abi == "" {
		abi = "none"
	}
	fmt.Fprintf(w, "abi: %s\n", abi)
	exports := make([]string, 0, len(mod.ExportedFunctions()))
	for name, d := range mod.ExportedFunctions() {
		exports = append(exports, name+sig(d))
	}
	sort.Strings(exports)
	fmt.Fprintf(w, "exports (%d):\n", len(exports))
	for _, e := range exports {
		fmt.Fprintf(w, "  %s\n", e)
	}
	for name := range mod.ExportedMemories() {
		fmt.Fprintf(w, "  memory %s\n", name)
	}
	imps := mod.ImportedFunctions()
	fmt.Fprintf(w, "imports (%d):\n", len(imps))
	for _, d := range imps {
		m, n, _ := d.Import()
		fmt.Fprintf(w, "  %s.%s%s\n", m, n, sig(d))
	}
	if _, err := meter.Instrument(wasm, meter.Config{}); err != nil {
		fmt.Fprintf(w, "cpu_limit: watchdog fallback (the meter cannot instrument it: %v)\n", err)
	} else {
		fmt.Fprintln(w, "cpu_limit: meter")
	}
	if verr != nil {
		fmt.Fprintf(w, "verdict: BAD (%v)\n", verr)
		return fmt.Errorf("check %s: %w", path, verr)
	}
	fmt.Fprintln(w, "verdict: OK")
	return nil
}
