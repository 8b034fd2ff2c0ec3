# Weir: the two commands a newcomer needs are `make run` and `make test`.
SWIFT ?= swift
BUILD_FLAGS ?=

.PHONY: run test bench build release bootstrap clean

bootstrap:
	@scripts/bootstrap

build: bootstrap
	$(SWIFT) build $(BUILD_FLAGS)

release: bootstrap
	$(SWIFT) build -c release $(BUILD_FLAGS)

## make run: build in release mode and start Weir (embedded broker; the demo once the pipeline lands).
run: release
	.build/release/weir broker --partitions 8 --topic events --topic predictions --topic dead-letters

## make test: every test, against embedded brokers over TCP. Builds the weir binary first:
## the interop tests run `weir broker` and talk to it with kcat.
test: bootstrap
	$(SWIFT) build --build-tests $(BUILD_FLAGS)
	$(SWIFT) test --skip-build $(BUILD_FLAGS)

## make bench: release build, then every benchmark against its peer in one run.
bench: release
	scripts/bench

clean:
	rm -rf .build
