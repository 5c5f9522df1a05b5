# Hearth — the two commands are `make run` and `make test`; the rest helps.
GO       ?= go
BIN      := $(CURDIR)/bin
PKGS     := ./...
FUZZTIME ?= 30s

.PHONY: all build run test test-short lint bench fuzz clean

all: build

## build: compile every binary into bin/
build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./edge/cmd/... ./hub/cmd/... ./protocol/cmd/...

## run: start the whole pipeline (RabbitMQ at AMQP_URL if reachable, else the embedded broker)
run: build
	@deploy/local/run.sh

## test: every test with the race detector, against a private RabbitMQ node
test:
	@deploy/local/test.sh

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
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./protocol/ ./edge/ | tee bench.txt

## fuzz: run every fuzz target for FUZZTIME each
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeFrame$$' -fuzztime $(FUZZTIME) ./protocol/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeEnvelope$$' -fuzztime $(FUZZTIME) ./protocol/

clean:
	rm -rf $(BIN) bench.txt
