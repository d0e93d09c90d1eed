package main

import (
	"fmt"
	"os"

	"github.com/wasmgate/wasmgate/wasmhost"
)

// pluginsCmd implements `gateway plugins check FILE.wasm...`: it loads each
// module the way the gateway would (compile, check ABI marker, memory,
// allocator, imports) without running it, prints what it found and a
// verdict, and exits 1 if any module would be refused.
func pluginsCmd(args []string) int {
	if len(args) < 2 || args[0] != "check" {
		fmt.Fprintln(os.Stderr, "usage: gateway plugins check FILE.wasm [FILE.wasm...]")
		return 2
	}
	code := 0
	for i, path := range args[1:] {
		if i > 0 {
			fmt.Println()
		}
		if err := wasmhost.CheckFile(os.Stdout, path); err != nil {
			code = 1
		}
	}
	return code
}
