# ran-edge: the two commands a new user types are `make demo` and `make test`.
# Both set everything up first (virtualenv in .venv, pinned dependencies).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TARGET ?= ethos-u55-128
MODEL  ?= mobilenet_v2
OUT    ?= build

.PHONY: setup demo test lint bench clean help

help:
	@echo "make demo    - set up, then build the built-in MobileNetV2 for $(TARGET) and print its profile"
	@echo "make test    - set up, then run the test suite"
	@echo "make setup   - create $(VENV) with the pinned dependencies (requirements.lock)"
	@echo "make lint    - ruff check + format check"
	@echo "make bench   - stage timings and ran-edge overhead (benchmarks/)"

setup: $(STAMP)

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

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python benchmarks/stage_times.py

clean:
	rm -rf $(OUT) .pytest_cache
