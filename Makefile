# Hearth — the two commands are `make run` and `make test`; the rest helps.
GO       ?= go
BIN      := $(CURDIR)/bin
PKGS     := ./...
FUZZTIME ?= 30s

.PHONY: all build run test test-short chaos lint bench bench-load fuzz clean

all: build

## build: compile every binary into bin/
build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./edge/cmd/... ./hub/cmd/... ./protocol/cmd/... ./loadtest/cmd/...

## run: start the whole pipeline (RabbitMQ at AMQP_URL if reachable, else the embedded broker)
run: build
	@deploy/local/run.sh

## test: every test with the race detector, against a private RabbitMQ node
test:
	@deploy/local/test.sh

## chaos: kill -9 hubs repeatedly under load for CHAOS_DURATION and print the checker's table
CHAOS_DURATION ?= 3m
chaos:
	@HEARTH_CHAOS_DURATION=$(CHAOS_DURATION) deploy/local/test.sh -run '^TestChaosLong$$' -v -timeout 60m ./shared/e2e/ | grep -v '^\s*{'

## test-short: unit tests only, no RabbitMQ (developer loop; CI runs `make test`)
test-short:
	$(GO) test -race -count=1 -short $(PKGS)

## lint: go vet, gofmt and staticcheck
lint:
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

## bench: micro-benchmarks with allocation counts (compare runs with benchstat)
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./protocol/ ./edge/ ./hub/ | tee bench.txt

## bench-load: a short run of every load scenario against a local pipeline on a
## private RabbitMQ (under 5 minutes); results and reports in docs/bench/
bench-load: build
	$(GO) build -o $(BIN)/ ./loadtest/cmd/hearth-load
	@loadtest/bench-load.sh

## fuzz: run every fuzz target for FUZZTIME each
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeFrame$$' -fuzztime $(FUZZTIME) ./protocol/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeEnvelope$$' -fuzztime $(FUZZTIME) ./protocol/
	$(GO) test -run '^$$' -fuzz '^FuzzSplitEnvelopeBatch$$' -fuzztime $(FUZZTIME) ./protocol/
	$(GO) test -run '^$$' -fuzz '^FuzzFrameReader$$' -fuzztime $(FUZZTIME) ./edge/

clean:
	rm -rf $(BIN) bench.txt
