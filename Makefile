# haocha — `make demo` runs a whole hall on this machine; `make test` runs the suite.
# Both create .venv and install what they need (Mosquitto from Debian's packages when missing).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench mosquitto clean

demo: $(STAMP) mosquitto
	$(BIN)/haocha demo

test: $(STAMP) mosquitto lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP) mosquitto
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/stats.py

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[sim,test]'
	touch $(STAMP)

# Mosquitto from Debian's packages when it is missing; as non-root, say how.
mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto) >/dev/null; \
		systemctl disable --now mosquitto >/dev/null 2>&1 || true; \
	else echo "Mosquitto is missing: run 'sudo apt-get install mosquitto' and try again" >&2; exit 1; fi

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
