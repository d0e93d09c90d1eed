package wasmbuild

import (
	"fmt"
	"os"
	"path/filepath"
)

func init() { builders[AssemblyScript] = buildAssemblyScript }

// buildAssemblyScript compiles an AssemblyScript entry file (or the one
// .ts file of a directory) with the compiler pinned by
// sdk/assemblyscript/package-lock.json, installing it with `npm ci` when
// node_modules is missing.
func buildAssemblyScript(src, out string) error {
	entry := src
	if st, err := os.Stat(src); err == nil && st.IsDir() {
		files, _ := filepath.Glob(filepath.Join(src, "*.ts"))
		if len(files) != 1 {
			return fmt.Errorf("want exactly one .ts entry file in %s, found %d", src, len(files))
		}
		entry = files[0]
	}
	sdk := Path("sdk", "assemblyscript")
	asc := filepath.Join(sdk, "node_modules", ".bin", "asc")
	if _, err := os.Stat(asc); err != nil {
		npm, err := need("npm", "apt-get install nodejs npm")
		if err != nil {
			return err
		}
		if err := run(sdk, nil, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"); err != nil {
			return fmt.Errorf("toolchain missing: AssemblyScript (npm ci in %s failed): %w", sdk, err)
		}
	}
	if _, err := need("node", "apt-get install nodejs npm"); err != nil {
		return err
	}
	return run(sdk, nil, asc, entry, "-O3", "--runtime", "incremental", "--use", "abort=", "--exportStart", "_initialize", "-o", out)
}
