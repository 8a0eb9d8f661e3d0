# vkp — the Makefile is the interface; CI (.ci/run) calls `make test`.
GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/vkp-proxy/vkp/cli.Version=$(VERSION)
FUZZTIME ?= 15s

.PHONY: all build run test test-race test-alloc bench bench-go fuzz lint clean

all: build

## build: static vkp binary in bin/vkp (what the container image packages)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/vkp .

## run: vkp on configs/quickstart.json in front of a demo origin on 127.0.0.1:9001
run: build
	@$(GO) build -o $(BIN)/vkp-bench ./bench
	@set -e; \
	$(BIN)/vkp-bench origin --listen 127.0.0.1:9001 --size 64 >/dev/null & origin=$$!; \
	trap 'kill $$origin 2>/dev/null' EXIT INT TERM; \
	echo; echo "vkp: 127.0.0.1:8080 -> demo origin 127.0.0.1:9001 (Ctrl-C stops both)"; \
	echo "try:  curl -i http://127.0.0.1:8080/hello"; echo; \
	$(BIN)/vkp serve --config configs/quickstart.json

## test: vet, the whole suite under -race, then the zero-allocation tests
test: lint test-race test-alloc

test-race:
	$(GO) test -race -count=1 -timeout 9m ./...

# AllocsPerRun tests are built without -race (the race detector allocates).
test-alloc:
	$(GO) test -count=1 -run 'Alloc' ./...

## bench: in-process hot-path benchmarks, then a short side-by-side run
bench: bench-go
	$(GO) run ./bench run --duration 2s --warmup 500ms --out bench/out/bench.md

bench-go:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./engine/...

## fuzz: a short run of every fuzz target (the seed corpus runs in `make test`)
fuzz:
	$(GO) test ./engine/expr -run '^$$' -fuzz '^FuzzCompile$$' -fuzztime $(FUZZTIME)
	$(GO) test ./engine/expr -run '^$$' -fuzz '^FuzzCompileTemplate$$' -fuzztime $(FUZZTIME)
	$(GO) test ./engine -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME)
	$(GO) test ./engine -run '^$$' -fuzz '^FuzzParseDuration$$' -fuzztime $(FUZZTIME)
	$(GO) test ./engine -run '^$$' -fuzz '^FuzzParseSize$$' -fuzztime $(FUZZTIME)
	$(GO) test ./engine -run '^$$' -fuzz '^FuzzParseDestination$$' -fuzztime $(FUZZTIME)
	$(GO) test ./engine -run '^$$' -fuzz '^FuzzChunkedBody$$' -fuzztime $(FUZZTIME)
	$(GO) test ./engine -run '^$$' -fuzz '^FuzzDecodeEntry$$' -fuzztime $(FUZZTIME)
	$(GO) test ./engine -run '^$$' -fuzz '^FuzzCORSConfig$$' -fuzztime $(FUZZTIME)
	$(GO) test ./store -run '^$$' -fuzz '^FuzzDiskHeader$$' -fuzztime $(FUZZTIME)

STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $$($(GO) env GOPATH)/bin/staticcheck)
STATICCHECK_VERSION ?= v0.8.2

## lint: gofmt, go vet, staticcheck, go mod tidy -diff
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@test -x "$(STATICCHECK)" || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(STATICCHECK) ./...
	$(GO) mod tidy -diff

clean:
	rm -rf $(BIN)
