# The two commands a newcomer needs (as root, on Debian): `make demo` and `make test`.
CARGO ?= cargo
BIN := target/release/cilia
# Go's own installer puts it here, not on a login shell's PATH everywhere.
export PATH := $(PATH):/usr/local/go/bin

.PHONY: demo test deps kubernetes build lint down

deps:
	./scripts/install-deps.sh

# Kubernetes' control plane for `cilia lab up --control-plane kubernetes` and its tests, built from
# Kubernetes' Go modules once into /var/cache/cilia/kubernetes (minutes cold, nothing when built).
kubernetes:
	@if command -v go >/dev/null 2>&1; then ./scripts/install-kubernetes.sh; \
	else echo "make: no Go toolchain: Kubernetes is not built, and the Kubernetes-mode tests will fail saying so" >&2; fi

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
test: deps kubernetes lint
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast
