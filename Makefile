# The two commands a newcomer needs (as root, on Debian): `make demo` and `make test`.
CARGO ?= cargo
BIN := target/release/cilia

.PHONY: demo test deps build lint down

deps:
	./scripts/install-deps.sh

build: deps
	$(CARGO) build --release --bins

# Brings the lab up and replays the guide's scenario, checking every step.
demo: build
	$(BIN) lab up
	$(BIN) lab guide

down:
	$(BIN) lab down

lint: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Every test: unit tests of the pure crates and, as root, the kernel and end-to-end tests that build
# their own network namespaces.
test: deps lint
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast
