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
# No Go, or a Go too old (the script exits 2 and says which), is not an error here: see `test`.
kubernetes:
	@if command -v go >/dev/null 2>&1; then ./scripts/install-kubernetes.sh || [ $$? -eq 2 ]; \
	else echo "make: no Go toolchain: Kubernetes is not built" >&2; fi

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
# Without Kubernetes' binaries (no Go >= 1.24 to build them, e.g. Debian 12's Go is 1.19) the
# tests on Kubernetes' control plane (named on_kubernetes_*) are skipped, and make says so; run by
# themselves, they fail naming what is missing.
test: deps kubernetes lint
	$(CARGO) build --workspace --bins
	@skip=; if [ ! -x "$$(./scripts/install-kubernetes.sh --bin-dir)/kube-apiserver" ]; then \
	  echo "make: Kubernetes is not built: skipping the on_kubernetes_ tests (scripts/install-kubernetes.sh needs Go >= 1.24)" >&2; \
	  skip="--skip on_kubernetes_"; fi; \
	echo "$(CARGO) test --workspace --no-fail-fast -- $$skip"; \
	$(CARGO) test --workspace --no-fail-fast -- $$skip
