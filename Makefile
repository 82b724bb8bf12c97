# hubfleet — the two README commands (`make demo`, `make test`) install everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CHP := node_modules/.bin/configurable-http-proxy
STAMP := $(VENV)/.hubfleet-installed
PYTEST_ARGS ?=
# The second stack: the stock z2jh 4.4.0 hub image (quay.io/jupyterhub/k8s-hub:4.4.0) is Python 3.12 with the frozen
# requirements in ../shared/z2jh-4.4.0 (JupyterHub 5.5.0, kubespawner 7.0.0, jupyterhub-idle-culler 1.4.0). pycurl and
# psycopg2 need libcurl/libpq headers and are left out (psycopg2-binary of the image's psycopg2 version stands in).
# The test extras are installed *constrained* by those pins, so the stack under test is the image's, not what pip
# would pick.
HUB_VENV := .venv-hub
HUB_PY := $(HUB_VENV)/bin/python
HUB_STAMP := $(HUB_VENV)/.hubfleet-installed
Z2JH_DIR ?= $(firstword $(wildcard $(HUBFLEET_Z2JH_DIR) $(CURDIR)/../shared/z2jh-4.4.0 $(CURDIR)/../../shared/z2jh-4.4.0))
HUB_REQUIREMENTS := $(Z2JH_DIR)/hub-image-requirements.txt
PYTHON312 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3) $(shell command -v python3.12))

.PHONY: install install-hub-stack demo test test-main test-hub-stack test-unit bench docs realcluster-test clean

install: $(STAMP) $(CHP) system-deps

install-hub-stack: $(HUB_STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Two distributions: hubfleet (the product, what the hub image installs) and hubfleet-devcluster (devcluster/: the
# Kubernetes stand-in, its pytest plugin and the demo), both editable.
$(STAMP): pyproject.toml devcluster/pyproject.toml $(VENV)/bin/python
	$(PIP) install --quiet -e '.[test,bench]' -e ./devcluster
	touch $(STAMP)

$(HUB_STAMP): pyproject.toml devcluster/pyproject.toml $(HUB_REQUIREMENTS)
	@[ -n "$(PYTHON312)" ] || { echo "Python 3.12 not found (the stock hub image's Python): install it (pyenv install 3.12) or set PYTHON312=..."; exit 2; }
	@[ -f "$(HUB_REQUIREMENTS)" ] || { echo "$(HUB_REQUIREMENTS) not found: set HUBFLEET_Z2JH_DIR to the z2jh-4.4.0 chart data folder"; exit 2; }
	[ -x $(HUB_PY) ] || { $(PYTHON312) -m venv $(HUB_VENV) && $(HUB_VENV)/bin/pip install --quiet --upgrade pip; }
	grep -vE '^(pycurl|psycopg2)==' $(HUB_REQUIREMENTS) > $(HUB_VENV)/hub-image-requirements.txt
	sed -nE 's/^psycopg2==/psycopg2-binary==/p' $(HUB_REQUIREMENTS) >> $(HUB_VENV)/hub-image-requirements.txt
	$(HUB_VENV)/bin/pip install --quiet -r $(HUB_VENV)/hub-image-requirements.txt
	$(HUB_VENV)/bin/pip install --quiet -c $(HUB_VENV)/hub-image-requirements.txt -e '.[test]' -e ./devcluster
	touch $(HUB_STAMP)

$(CHP):
	npm install --no-fund --no-audit --no-save --loglevel=error configurable-http-proxy@5

# slapd/ldap-utils/openssl for the LDAP tests, chromium for the browser tests, pebble (ACME test CA) for autohttps,
# prometheus for the culler's GPU-activity tests, bubblewrap for the devcluster's pod sandboxes, postgresql (the
# production hub database) for the database tests: installed when missing, as root.
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
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "WARNING: missing$$missing; install them (apt-get install$$missing) or run as root"; fi; \
	fi

demo: install
	$(VENV)/bin/hubfleet-demo --state .state/demo

# Three lanes side by side: the tests on each stack, and (on the current stack) the tests marked stack_independent,
# which make test runs once. The suites mostly wait on their hubs and servers (about 1.2 of 2 cores busy with two
# lanes), so a third lane for the stack-independent tests fills idle time instead of running after the others.
# Each lane's output is prefixed with its name, takes its servers' ports from its own range (free_port) and writes
# its artifacts apart; red if any lane is. A lane that a PYTEST_ARGS selection leaves empty (pytest exit code 5)
# passes.
CURRENT = PATH="$(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest
STACK1 = HUBFLEET_PORT_RANGE=10000-17999 $(CURRENT) -m "not stack_independent" $(PYTEST_ARGS)
ONCE = HUBFLEET_PORT_RANGE=18000-21999 HUBFLEET_ARTIFACTS=$(CURDIR)/test-artifacts/stack-independent \
	$(CURRENT) -m stack_independent $(PYTEST_ARGS)
STACK2 = PATH="$(CURDIR)/node_modules/.bin:$(CURDIR)/$(HUB_VENV)/bin:$$PATH" HUBFLEET_ARTIFACTS=$(CURDIR)/test-artifacts/hub-stack \
	HUBFLEET_PORT_RANGE=22000-32767 \
	$(HUB_PY) -m pytest -m "not stack_independent" $(PYTEST_ARGS)
lane = ( $(1) 2>&1 | sed -u 's/^/[$(2)] /'; rc=$${PIPESTATUS[0]}; [ $$rc = 5 ] && rc=0; exit $$rc )
test: install install-hub-stack
	@echo "=== [current] $$($(PY) -c 'import sys,jupyterhub,kubespawner; print("Python", sys.version.split()[0], "JupyterHub", jupyterhub.__version__, "kubespawner", kubespawner.__version__)')"; \
	echo "=== [hub-4.4.0] $$($(HUB_PY) -c 'import sys,jupyterhub,kubespawner; print("Python", sys.version.split()[0], "JupyterHub", jupyterhub.__version__, "kubespawner", kubespawner.__version__)')"; \
	$(call lane,$(STACK1),current) & p1=$$!; \
	$(call lane,$(STACK2),hub-4.4.0) & p2=$$!; \
	$(call lane,$(ONCE),stack-independent) & p3=$$!; \
	rc=0; wait $$p1 || rc=1; wait $$p2 || rc=1; wait $$p3 || rc=1; \
	echo "=== all lanes: $$( [ $$rc = 0 ] && echo passed || echo FAILED )"; exit $$rc

test-main: install
	HUBFLEET_PORT_RANGE=10000-21999 $(CURRENT) $(PYTEST_ARGS)

test-hub-stack: install install-hub-stack
	$(STACK2)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

bench: install
	PATH="$(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m bench

docs: install
	$(PY) -m hubfleet.config.docgen > docs/config-reference.md

realcluster-test: install
	HUBFLEET_REAL_CLUSTER=1 $(PY) -m pytest -m realcluster tests/integration/test_spawner_lifecycle.py

clean:
	rm -rf $(VENV) $(HUB_VENV) node_modules .state test-artifacts
