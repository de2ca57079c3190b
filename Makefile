# The two entry points of the README: `make demo` and `make test`.
# The build cache lives outside the clone so CI on a warm machine rebuilds only what changed.
CARGO_TARGET_DIR ?= $(HOME)/.cache/streams-ws/target
export CARGO_TARGET_DIR
export PATH := $(CURDIR)/.tools/bin:$(PATH)
NEXTEST := $(shell command -v cargo-nextest 2>/dev/null)

# `make demo SYSTEM=txrelay` sets up, builds and runs one system only; empty means all five.
SYSTEM ?=
# The build profile of the demos: `dev`, the same build `make test` uses, so a newcomer's first
# look costs a debug build (7 min 17 s cold on 2 cores, against 32 min 25 s for `release`), and a
# later `make test` reuses it (1 min 34 s more for the test targets). Speed figures in the demo
# table are then a debug build's; `DEMO_PROFILE=release` gives release figures, and every `bench`
# subcommand is meant for a release build (`cargo run --release -p SYSTEM -- bench`).
DEMO_PROFILE ?= dev
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
# `make test` lints while it builds the tests: clippy-driver as the workspace crates' compiler
# wrapper (what `cargo clippy` does under `cargo check`) lints every target the tests build (lib,
# bins, unit and integration tests; there are no benches or examples) with `-D warnings`, and the
# dependencies are compiled once, for the tests, instead of a second time in check mode for
# clippy (7 min 56 s cold). Without rustup's clippy-driver, `make test` runs `cargo clippy` first.
CLIPPY_DRIVER := $(shell rustup which clippy-driver 2>/dev/null)
ifneq ($(CLIPPY_DRIVER),)
LINT_PREREQ :=
LINT_ENV := RUSTC_WORKSPACE_WRAPPER=$(CLIPPY_DRIVER) CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
else
LINT_PREREQ := clippy
LINT_ENV :=
endif

setup:
	scripts/setup $(SYSTEM)

## Every landed system's demo (or only SYSTEM's) on the bundled data, then one summary table.
demo: setup release
	scripts/demo $(SYSTEM)

release:
	cargo build --profile $(DEMO_PROFILE) --locked $(BUILD_SCOPE) --bins $(TIMINGS_FLAG)

## Formatting, lints, the whole test suite, doc tests.
test: setup fmt $(LINT_PREREQ) unit doc-test

fmt:
	cargo fmt --all --check

clippy:
	cargo clippy --workspace --all-targets --locked -- -D warnings

unit:
ifneq ($(NEXTEST),)
	$(LINT_ENV) cargo nextest run --workspace --locked --no-fail-fast $(TIMINGS_FLAG)
else
	# Without nextest's test groups the end-to-end tests (real servers) run one at a time.
	$(LINT_ENV) cargo test --workspace --locked --no-fail-fast --lib --bins --tests -- --test-threads=1
endif

doc-test:
	$(LINT_ENV) cargo test --workspace --locked --doc
