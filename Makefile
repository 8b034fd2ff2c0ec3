# Weir: the two commands a newcomer needs are `make run` and `make test`.
SWIFT ?= swift
BUILD_FLAGS ?=

.PHONY: run test bench build release bootstrap clean demo-bundle fuzz chaos soak

bootstrap:
	@scripts/bootstrap

build: bootstrap
	$(SWIFT) build $(BUILD_FLAGS)

release: bootstrap
	$(SWIFT) build -c release $(BUILD_FLAGS)

## make run: build in release mode and run the demo: embedded broker, synthetic producer, one worker
## on models/payments, a live summary each second (Ctrl-C stops; DEMO_FLAGS="--duration 30" stops by itself).
DEMO_FLAGS ?=
run: release
	.build/release/weir demo $(DEMO_FLAGS)

## make demo-bundle: regenerate models/payments and models/demo (needs Python with pandas, scikit-learn and skl2onnx).
demo-bundle: build
	python3 scripts/make-demo-bundle.py --weir .build/debug/weir

## make test: every test, against embedded brokers over TCP. Builds the weir binary first:
## the interop tests run `weir broker` and talk to it with kcat. Suites run one after another: on two
## cores, group tests timed against the embedded broker must not compete with worker tests for CPU.
## scripts/test-tools installs moto[server], the S3 API server the bundle-location tests start.
test: bootstrap
	@scripts/test-tools
	$(SWIFT) build --build-tests $(BUILD_FLAGS)
	$(SWIFT) test --skip-build --no-parallel $(BUILD_FLAGS)

## make bench: release build, then every benchmark against its peer in one run.
bench: release
	scripts/bench

## make chaos: the fault scenarios at 5x the events, plus the long ones (rebalance 1 -> 3 -> 1).
chaos: bootstrap
	$(SWIFT) build --build-tests $(BUILD_FLAGS)
	WEIR_CHAOS_SCALE=$${WEIR_CHAOS_SCALE:-5} $(SWIFT) test --skip-build --no-parallel --filter "ChaosTests|CrashRecoveryTests|ExactlyOnceTests" $(BUILD_FLAGS)

## make soak: 10 minutes of the demo at SOAK_RATE; RSS after warm-up and at the end, latency percentiles.
soak: bootstrap
	scripts/soak

## make fuzz: libFuzzer targets (event decoder against jansson, Avro decoder against libavro-c, control messages), FUZZ_SECONDS each (600).
fuzz: bootstrap
	scripts/fuzz

clean:
	rm -rf .build
