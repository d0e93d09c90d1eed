package main

import (
	"fmt"
	"os"
)

// sessionsCmd is replaced by the full implementation; this build has none.
func sessionsCmd(args []string) int {
	fmt.Fprintln(os.Stderr, "gateway sessions: not available in this build")
	return 1
}
