# hubfleet — the two README commands (`make demo`, `make test`) install everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CHP := node_modules/.bin/configurable-http-proxy
STAMP := $(VENV)/.hubfleet-installed
PYTEST_ARGS ?=

.PHONY: install demo test test-unit bench docs realcluster-test clean

install: $(STAMP) $(CHP) system-deps

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): pyproject.toml $(VENV)/bin/python
	$(PIP) install --quiet -e '.[test,devcluster,bench]'
	touch $(STAMP)

$(CHP):
	npm install --no-fund --no-audit --no-save --loglevel=error configurable-http-proxy@5

# slapd/ldap-utils/openssl for the LDAP tests, chromium for the browser tests, pebble (ACME test CA) for autohttps,
# prometheus for the culler's GPU-activity tests, bubblewrap for the devcluster's pod sandboxes: installed when
# missing, as root.
.PHONY: system-deps
system-deps:
	@missing=""; \
	command -v slapd >/dev/null || [ -x /usr/sbin/slapd ] || missing="$$missing slapd"; \
	command -v ldapadd >/dev/null || missing="$$missing ldap-utils"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v pebble >/dev/null || missing="$$missing pebble"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "WARNING: missing$$missing; install them (apt-get install$$missing) or run as root"; fi; \
	fi

demo: install
	$(VENV)/bin/hubfleet demo --state .state/demo

test: install
	PATH="$(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

bench: install
	PATH="$(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m bench

docs: install
	$(PY) -m hubfleet.config.docgen > docs/config-reference.md

realcluster-test: install
	HUBFLEET_REAL_CLUSTER=1 $(PY) -m pytest -m realcluster tests/integration/test_spawner_lifecycle.py

clean:
	rm -rf $(VENV) node_modules .state test-artifacts
