# haocha — `make demo` runs a whole hall on this machine; `make test` runs the suite.
# Both create .venv and install what they need (Mosquitto from Debian's packages when missing).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Debian packages the tests use: the broker, a browser for the hall display test, a CJK font,
# socat for the pty pairs between panel drivers and simulated panels.
TEST_DEBS := mosquitto chromium fonts-wqy-zenhei socat

.PHONY: demo test lint typecheck bench mosquitto test-debs debs clean

demo: $(STAMP) mosquitto
	$(BIN)/haocha demo

# Three workers on two cores: the end-to-end tests spend most of their time waiting on brokers,
# hubs and terminals, so the suite takes about half its serial time (about 6 minutes on 2 cores).
test: $(STAMP) test-debs lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider -n 3 tests

# The layers (docs/layers.md) are import-linter contracts in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP) test-debs
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/backlog.py
	$(BIN)/python bench/stats.py
	$(BIN)/python bench/today.py
	$(BIN)/python bench/rss.py
	$(BIN)/python bench/micro_soak.py
	$(BIN)/python bench/panels.py
	$(BIN)/python -m bench.upstream_bench
	$(BIN)/python bench/alerts.py
	$(BIN)/python bench/chaos.py --minutes 10

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[sim,test]'
	touch $(STAMP)

# Debian packages when they are missing; as non-root, say how. Debian starts the packaged
# broker as a service on port 1883: haocha runs its own, so that one is stopped.
mosquitto:
	@$(MAKE) --no-print-directory debs DEBS=mosquitto

test-debs:
	@$(MAKE) --no-print-directory debs DEBS="$(TEST_DEBS)"

# A package counts only when dpkg says "installed": `dpkg -s` also succeeds for one removed but
# not purged (state rc), whose binaries are gone.
debs:
	@missing=$$(for p in $(DEBS); do \
		[ "$$(dpkg-query -W -f='$${db:Status-Status}' $$p 2>/dev/null)" = installed ] || echo $$p; done); \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing from Debian: $$missing" >&2; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null; \
		systemctl disable --now mosquitto >/dev/null 2>&1 || true; \
	else echo "missing Debian packages: run 'sudo apt-get install $$missing' and try again" >&2; exit 1; fi

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
