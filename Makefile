# ran-edge: the two commands a new user types are `make demo` and `make test`.
# Both set everything up first (virtualenv in .venv, pinned dependencies).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TARGET ?= ethos-u55-128
MODEL  ?= mobilenet_v2
OUT    ?= build

.PHONY: setup system-deps demo test test-fast firmware regress lint bench bench-fidelity bench-coverage clean help

help:
	@echo "make demo    - set up, then build the built-in MobileNetV2 for $(TARGET) and print its profile"
	@echo "make test    - set up, then run the test suite"
	@echo "make test-fast - set up, then run the suite without the slow tests (zoo, search, advise)"
	@echo "make setup   - create $(VENV) with the pinned dependencies (requirements.lock)"
	@echo "make lint    - ruff check + format check + the package's import layers (import-linter)"
	@echo "make firmware MODEL=mobilenet_v2 TARGET=ethos-u55-128 - C sources in $(OUT)/<model>/<target>/firmware/"
	@echo "make regress - fail when a zoo model got slower or bigger on the NPU (ci/baselines.json)"
	@echo "make bench   - build speed vs the bare tools, 4 targets vs 1, CLI start-up and profile vs Vela"
	@echo "make bench-fidelity - int8 fidelity of trained digits models: range methods, mixed precision"
	@echo "make bench-coverage - 48 torchvision/timm/everyday networks through a default build (installs the optional model packages)"

setup: $(STAMP) system-deps

# Debian tools the firmware compile check, the HTML report test and the SSH remote test use. Installed when
# missing and apt-get is usable (root); otherwise those tests skip and say why.
SYSTEM_TOOLS := arm-none-eabi-gcc:gcc-arm-none-eabi chromium:chromium sshd:openssh-server ssh:openssh-client
system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "warning: could not install$$missing; the tests that need them will skip"; \
	  else echo "note: missing$$missing (needs root + apt-get); the tests that need them will skip"; fi; \
	fi

# Re-run the install whenever the pins or the package metadata change.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: setup
	$(BIN)/ran-edge build --model $(MODEL) --target $(TARGET) --out $(OUT)

test: setup
	$(BIN)/python -m pytest -q

# The quick tier: everything but the tests marked slow (whole zoo networks, search, advise).
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

# Incremental: a second run with the same model and target does no work.
firmware: setup
	$(BIN)/ran-edge build --model $(MODEL) --target $(TARGET) --out $(OUT) --incremental --firmware -q

# The CI gate on Vela estimates (ci/regress.toml against ci/baselines.json).
regress: setup
	$(BIN)/ran-edge regress --baseline ci/baselines.json --config ci/regress.toml

# ruff, then the package's layering contracts (pyproject.toml [tool.importlinter]).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# Build speed (one target vs the bare tools, four targets vs one) and CLI speed (start-up,
# `profile` vs Vela alone): medians and ratios.
bench: setup
	$(BIN)/python benchmarks/stage_times.py
	$(BIN)/python benchmarks/cli_speed.py

bench-fidelity: setup
	$(BIN)/python benchmarks/fidelity.py

# Model definitions only (random init, no weights download). --no-deps keeps the CPU torch:
# torchvision's own pin would pull a CUDA build; benchmarks/coverage.py copes with its
# CUDA-linked ops being absent.
COVERAGE_PACKAGES := torchvision==0.28.0 timm==1.0.31
bench-coverage: setup
	$(BIN)/python -m pip install --quiet --no-deps $(COVERAGE_PACKAGES)
	$(BIN)/python benchmarks/coverage.py

clean:
	rm -rf $(OUT) .pytest_cache
