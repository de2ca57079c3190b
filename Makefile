# The two entry points of the README: `make demo` and `make test`.
# The build cache lives outside the clone so CI on a warm machine rebuilds only what changed.
CARGO_TARGET_DIR ?= $(HOME)/.cache/streams-ws/target
export CARGO_TARGET_DIR
export PATH := $(CURDIR)/.tools/bin:$(PATH)
NEXTEST := $(shell command -v cargo-nextest 2>/dev/null)

# `make demo SYSTEM=txrelay` sets up, builds and runs one system only; empty means all five.
SYSTEM ?=
# The build profile of demos and benchmarks (Cargo.toml explains the choice).
DEMO_PROFILE ?= release
ifeq ($(strip $(SYSTEM)),)
BUILD_SCOPE := --workspace
else
BUILD_SCOPE := $(foreach s,$(SYSTEM),-p $(s))
endif
export DEMO_PROFILE
# `make demo TIMINGS=1` / `make test TIMINGS=1` also write cargo's per-unit build timings
# (HTML under $(CARGO_TARGET_DIR)/cargo-timings/): issue 14's "measure first".
TIMINGS ?=
TIMINGS_FLAG := $(if $(strip $(TIMINGS)),--timings,)

.PHONY: setup demo test fmt clippy unit doc-test release

setup:
	scripts/setup $(SYSTEM)

## Every landed system's demo (or only SYSTEM's) on the bundled data, then one summary table.
demo: setup release
	scripts/demo $(SYSTEM)

release:
	cargo build --profile $(DEMO_PROFILE) --locked $(BUILD_SCOPE) --bins $(TIMINGS_FLAG)

## Formatting, lints, the whole test suite, doc tests.
test: setup fmt clippy unit doc-test

fmt:
	cargo fmt --all --check

clippy:
	cargo clippy --workspace --all-targets --locked -- -D warnings

unit:
ifneq ($(NEXTEST),)
	cargo nextest run --workspace --locked --no-fail-fast $(TIMINGS_FLAG)
else
	# Without nextest's test groups the end-to-end tests (real servers) run one at a time.
	cargo test --workspace --locked --no-fail-fast --lib --bins --tests -- --test-threads=1
endif

doc-test:
	cargo test --workspace --locked --doc
