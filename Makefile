# ontime developer tasks. Every tool runs from .venv, so CI and laptops use the same versions.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS ?= dev,audio,report,otlp,aggregator
# Re-install only when the dependencies change.
STAMP  := $(VENV)/.ontime-installed
# The Quix Streams peer of `ontime bench goodput` lives in its own environment: every quixstreams
# release caps confluent-kafka below the version ontime needs (workers/tools/bench/peers/).
QUIX_REQS  := workers/tools/bench/peers/quix-requirements.txt
QUIX_STAMP := $(VENV)/quix/.ontime-installed

# Debian packages (recordings, Java/Maven for Kafka); installs only what is missing.
system-deps:
	@.ci/system-deps

.PHONY: system-deps setup test lint typecheck unit integration kafka-jars broker-up broker-down broker-status demo bench

setup: $(STAMP) $(QUIX_STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[$(EXTRAS)]'
	@touch $@

$(QUIX_STAMP): $(QUIX_REQS) | $(STAMP)
	@test -x $(VENV)/quix/bin/python || $(PYTHON) -m venv $(VENV)/quix
	@$(VENV)/quix/bin/python -m pip install -q --disable-pip-version-check -r $(QUIX_REQS)
	@touch $@

# ruff, mypy, then unit and integration tests (the latter start a real Kafka broker). The fault
# bench's tests and the exactly-once broker restart kill brokers, freeze proxies and can leave
# librdkafka handles behind: each runs in a process of its own, so nothing of them can stall the
# rest of the suite. (The battery, the exactly-once kill -9 test and the at-least-once broker
# restart run in the main process: test_battery.py, test_faults.py, test_broker_outage.py.)
FAULTS := tests/integration/test_bench_faults.py
EOS_RESTART := tests/integration/test_eos_broker_restart.py
# pytest exit code 5 means "no tests collected", which is not a failure here.
test: system-deps $(STAMP) $(QUIX_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q tests/unit tests/integration --ignore=$(FAULTS) --ignore=$(EOS_RESTART) || [ $$? -eq 5 ]
	$(BIN)/python -m pytest -q $(EOS_RESTART)
	$(BIN)/python -m pytest -q $(FAULTS)::test_kill_9_of_postprocess_under_load_loses_nothing
	$(BIN)/python -m pytest -q $(FAULTS)::test_clients_through_toxiproxy_stay_behind_it_so_its_faults_reach_them

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit || [ $$? -eq 5 ]

integration: $(STAMP) $(QUIX_STAMP)
	$(BIN)/python -m pytest -q tests/integration || [ $$? -eq 5 ]

# Fetch the Kafka broker jars with Maven into ~/.cache/ontime (or $$ONTIME_CACHE_DIR) once.
kafka-jars: $(STAMP)
	@$(BIN)/python -m workers.localkafka fetch >/dev/null

broker-up: $(STAMP)
	@$(BIN)/python -m workers.localkafka up

broker-down: $(STAMP)
	@$(BIN)/python -m workers.localkafka down

broker-status: $(STAMP)
	@$(BIN)/python -m workers.localkafka status

# The main job on a fresh machine: packages, venv, Kafka jars (on first broker start), then the demo.
demo: system-deps $(STAMP)
	$(BIN)/ontime demo

# The recorded goodput comparison (about 25 minutes); `ontime bench goodput --quick` takes ~2.
bench: $(STAMP) $(QUIX_STAMP)
	$(BIN)/ontime bench goodput
