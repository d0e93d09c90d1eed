#!/usr/bin/env bash
# Installs the toolchains the tests and examples build Wasm guests with:
# clang/wasi-libc (C), wabt (WAT), Debian's rustc with wasm32-wasi std (Rust),
# and AssemblyScript from npm. Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v clang >/dev/null || missing+=(clang)
command -v wasm-ld >/dev/null || missing+=(lld)
[ -f /usr/lib/wasm32-wasi/libc.a ] || missing+=(wasi-libc)
ls /usr/lib/llvm-14/lib/clang/14*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1 || missing+=(libclang-rt-14-dev-wasm32)
command -v wat2wasm >/dev/null || missing+=(wabt)
[ -x /usr/bin/rustc ] || missing+=(rustc)
[ -x /usr/bin/cargo ] || missing+=(cargo)
[ -d /usr/lib/rustlib/wasm32-wasi ] || missing+=(libstd-rust-dev-wasm32)
command -v node >/dev/null || missing+=(nodejs npm)

if [ ${#missing[@]} -gt 0 ]; then
  echo "toolchains: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# AssemblyScript lives in sdk/assemblyscript/node_modules (pinned by its
# package-lock.json).
if [ -f sdk/assemblyscript/package.json ] && [ ! -x sdk/assemblyscript/node_modules/.bin/asc ]; then
  echo "toolchains: npm ci (assemblyscript)"
  (cd sdk/assemblyscript && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "toolchains: ready"
