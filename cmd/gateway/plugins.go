package main

import (
	"fmt"
	"os"
)

// pluginsCmd is replaced by the full implementation; this build has none.
func pluginsCmd(args []string) int {
	fmt.Fprintln(os.Stderr, "gateway plugins: not available in this build")
	return 1
}
