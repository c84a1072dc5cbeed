# fhirplug — the two commands a newcomer needs are `make up` and `make test` (see README.md).
# Every target installs what it is missing and is safe to run again.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: up down status demo test unit lint format bench build-store browser clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

## Start Redis, the FHIR store, the proxy and the forwarding worker; print where each listens.
up: $(STAMP)
	@$(BIN)/fhirplug stack up

## Stop everything `make up` started (data under var/ is kept).
down: $(STAMP)
	@$(BIN)/fhirplug stack down

status: $(STAMP)
	@$(BIN)/fhirplug stack status

## A message forwarded between two local deployments: `make up`'s stack (the hub) and a spoke
## the demo starts beside it; every step printed.
demo: up
	@$(BIN)/fhirplug stack demo

## Run every test: unit tests, then integration tests against a private stack on free ports.
test: $(STAMP) build-store browser
	@$(BIN)/python -m pytest

## Debian's chromium and chromedriver, for the web console's browser tests (installed when missing).
browser: $(STAMP)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		$(BIN)/python -c 'from tests.support.browser import ensure_chromium; ensure_chromium()'

unit: $(STAMP)
	@$(BIN)/python -m pytest tests/unit

build-store: $(STAMP)
	@$(BIN)/fhirplug stack build-store

lint: $(STAMP)
	@$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

format: $(STAMP)
	@$(BIN)/ruff format . && $(BIN)/ruff check --fix .

## Proxy vs direct HAPI, interleaved in one run; writes bench/RESULTS.md. Installs wrk if missing.
## FHIRPLUG_STORE_PROFILE=production make bench: the store with production JVM flags (a fresh stack).
bench: up
	@$(BIN)/python -c 'from ops.stack import install_packages; install_packages("wrk")'
	@$(BIN)/python -m bench --proxy http://127.0.0.1:8080/fhir --direct http://127.0.0.1:8090/fhir \
		--uncached --write bench/RESULTS.md

clean: down
	rm -rf var $(VENV) store/target
