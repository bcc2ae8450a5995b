# inframock — `make run` to start the stack, `make test` for the whole test suite.
SHELL := /bin/bash
VENV := .venv
BIN := target/release/inframock
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help setup build install run detach reload-data stop status test docker-images lint bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup: $(VENV)/.installed ## install what the local runtime needs: the AWS engines (moto, ministack) in .venv, redis-server, memcached, postgresql
	@missing=; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v memcached >/dev/null || missing="$$missing memcached"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v psql >/dev/null || missing="$$missing postgresql-client"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing:$$missing; install with: sudo apt-get install$$missing (Debian/Ubuntu) or brew install redis memcached postgresql"; exit 1; fi; \
	fi

$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

build: ## build the release binary (the one profile tests and benchmarks use)
	cargo build --release

install: ## put inframock on your PATH (cargo install: ~/.cargo/bin/inframock)
	cargo install --locked --path .

run: setup build ## start the stack in the foreground and load ./data (Ctrl-C stops it)
	$(BIN) run

detach: setup build ## start the stack in the background
	$(BIN) run --detach

reload-data: build ## reload ./data into the running stack
	$(BIN) reload-data

stop: build ## stop the stack
	$(BIN) stop

status: build
	$(BIN) status

# The stand-in images (minutes of debootstrap and downloads, once per machine) are built while the
# crate compiles; the tests wait for both. One profile: the tests reuse the release build.
# 4 integration tests at once keep both cores busy: a moto run of 110 tests kept the machine 92%
# busy for 149 s, most of it in the moto_server processes the tests start (161 of the 217 CPU
# seconds that process accounting, `sa`, recorded for the processes the tests ran). 4 at once took
# 77 s, 6 at once 81 s (104 tests, on a faster machine).
# RUST_TEST_THREADS set by the caller wins.
test: setup ## the whole test suite (unit + integration against real moto_server and MiniStack, redis-server, memcached, postgres, Docker, headless Chromium)
	@set -e; mkdir -p target; images=; export RUST_TEST_THREADS=$${RUST_TEST_THREADS:-4}; \
	if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "the dashboard tests need a headless Chromium: sudo apt-get install chromium"; exit 1; fi; \
	fi; \
	if docker info >/dev/null 2>&1; then \
	  tests/docker/build-standin-images.sh > target/standin-images.log 2>&1 & images=$$!; \
	else echo "docker runtime tests will be skipped: no Docker engine answers (they fail instead when CI=true)"; fi; \
	cargo build --release --all-targets; \
	if [ -n "$$images" ]; then \
	  wait $$images || { echo "building the stand-in images failed:"; tail -n 30 target/standin-images.log; exit 1; }; \
	  tail -n 1 target/standin-images.log; \
	fi; \
	cargo test --release; \
	echo "conformance: the AWS modules again against MiniStack"; \
	INFRAMOCK_TEST_ENGINE=ministack cargo test --release --test integration -- $(CONFORMANCE)

# The integration modules that talk to the AWS engine: `make test` runs them against moto (with the
# rest) and again against MiniStack, the same tests; where the engines differ the test says so.
CONFORMANCE := data:: stack:: lifecycle:: queues:: faults:: services:: snapshot::

docker-images: ## build the offline stand-in images the docker tests use
	tests/docker/build-standin-images.sh

lint: ## formatting and clippy, as CI runs them
	cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings

bench: setup build ## benchmarks; results in bench/results/ (BENCH_ARGS="--only mock --runs 3")
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; \
	  else echo "wrk is missing (the mock benchmark needs it): sudo apt-get install wrk"; exit 1; fi; }
	$(VENV)/bin/python bench/run_bench.py $(BENCH_ARGS)

clean:
	cargo clean
	rm -rf $(VENV) .inframock
