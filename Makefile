# wasmgate — see README.md. `make run` and `make test` are the two commands a
# fresh machine needs.
GO       ?= go
BIN      := bin
PKGS     := ./...
export CGO_ENABLED ?= 0

.PHONY: all build run test bench lint toolchains examples clean

all: build

build:
	$(GO) build -o $(BIN)/gateway ./cmd/gateway
	$(GO) build -o $(BIN)/upstream ./examples/upstream
	$(GO) build -o $(BIN)/loadgen ./cmd/loadgen

# Builds the five example plugins (installing their toolchains when missing),
# then starts the demo upstream and the gateway in the foreground with the
# example plugins on their own routes (examples/plugins.yaml); Ctrl-C stops both.
run: build examples
	@echo "demo upstream on 127.0.0.1:9000; gateway on http://127.0.0.1:8080 (admin http://127.0.0.1:9901)"
	@echo "try: curl -i http://127.0.0.1:8080/json                                   (no plugin)"
	@echo "     curl -i -H 'Host: go.example' http://127.0.0.1:8080/json             (401 from the Go plugin)"
	@echo "     curl -i -H 'Host: c.example' -H 'X-Api-Key: s3cret' http://127.0.0.1:8080/json"
	@echo "     curl -N -H 'Host: rust.example' -H 'X-Api-Key: s3cret' http://127.0.0.1:8080/sse/mixed"
	@trap 'trap - INT TERM EXIT; kill 0' INT TERM EXIT; \
	  $(BIN)/upstream -listen 127.0.0.1:9000 & \
	  $(BIN)/gateway run -config examples/plugins.yaml

toolchains:
	bash scripts/toolchains.sh

# The example interceptor in five languages, built from source to
# bin/examples/<lang>.wasm (examples/README.md; examples/plugins.yaml uses them).
RUST_REACTOR := /usr/lib/rustlib/wasm32-wasi/lib/self-contained/crt1-reactor.o
examples: toolchains
	@mkdir -p $(BIN)/examples
	wat2wasm --enable-all examples/wat/interceptor.wat -o $(BIN)/examples/wat.wasm
	clang --target=wasm32-wasi -O2 -mexec-model=reactor -Wl,--strip-all -I sdk/c -o $(BIN)/examples/c.wasm examples/c/interceptor.c
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -o $(BIN)/examples/go.wasm ./examples/go
	cd examples/rust && RUSTC=/usr/bin/rustc CARGO_TARGET_DIR=$(CURDIR)/$(BIN)/rust-target \
	  RUSTFLAGS="-C link-arg=$(RUST_REACTOR) -C link-arg=--export=_initialize" \
	  /usr/bin/cargo build --offline --quiet --release --target wasm32-wasi
	cp $(BIN)/rust-target/wasm32-wasi/release/interceptor.wasm $(BIN)/examples/rust.wasm
	cd sdk/assemblyscript && node_modules/.bin/asc ../../examples/assemblyscript/interceptor.ts \
	  -O3 --runtime incremental --use abort= --exportStart _initialize -o $(CURDIR)/$(BIN)/examples/assemblyscript.wasm
	@ls -l $(BIN)/examples/*.wasm

test: toolchains
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 14m $(PKGS)

# Gateway vs bare fasthttp proxy vs direct (GETs, and POSTs of an MCP
# call's size), recording on vs off (gateway
# processes) and SSE streams, in one run (scripts/bench.sh, ~4 minutes; the
# HTTP part ~2m10s, recording ~30s), then recording on vs off in one Go
# process (~1 minute).
# GOBENCH=1 also runs every package's Go micro-benchmarks.
bench: build
	$(GO) build -o $(BIN)/bareproxy ./internal/bench/bareproxy
	bash scripts/bench.sh
	@echo "== session recording on vs off (BenchmarkGatewayRecording: req/s, CPU-µs per request, on/off) =="
	$(GO) test -run '^$$' -bench BenchmarkGatewayRecording -benchtime 60000x -count 3 ./gateway/
	@if [ -n "$(GOBENCH)" ]; then $(GO) test -run '^$$' -bench . -benchmem $(PKGS); fi

lint:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

clean:
	rm -rf $(BIN)
