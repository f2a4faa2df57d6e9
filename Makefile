# gameday: `make demo` and `make test` are the two commands a new user needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo docker-demo test test-fast lint bench verify-demos clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install  ## run the demo experiment against the embedded demo system
	$(BIN)/gameday validate experiments/demo-*.yaml
	$(BIN)/gameday plan experiments/demo-pod-kill.yaml
	$(BIN)/gameday run experiments/demo-pod-kill.yaml

docker-demo: install  ## the docker driver: build the demo stack, run an experiment on it, remove it
	$(BIN)/python -m chaoslib_ext.demo.docker_image
	cd experiments/docker && docker-compose -p gameday-demo up -d --build --scale back=2
	$(BIN)/gameday run experiments/docker/stop-one-backend.yaml; status=$$?; \
	  cd experiments/docker && docker-compose -p gameday-demo down --rmi all; exit $$status

test: install lint  ## the whole suite, end-to-end tests included
	$(BIN)/python -m pytest

test-fast: install  ## everything but the slow end-to-end tests
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install  ## recorder accuracy and overhead, idle fault-proxy latency, verdicts against an exact judgement, scaling
	$(BIN)/python tests/bench/bench_recorder.py
	$(BIN)/python tests/bench/bench_proxy.py
	$(BIN)/python tests/bench/bench_verdicts.py
	@# the scaling bench's target is nginx; as root, install it without letting the package start it
	@if ! command -v nginx >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  made=; [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made=1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null; \
	  [ -z "$$made" ] || rm -f /usr/sbin/policy-rc.d; \
	fi
	$(BIN)/python tests/bench/bench_scaling.py

verify-demos: install  ## every demo as shipped, 10 times each: does the README's verdict come out every time?
	$(BIN)/python tests/bench/verify_demos.py --runs $${RUNS:-10}

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info
