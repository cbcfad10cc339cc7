# tldiag: the two commands of the README, plus helpers.
#   make run    set up .venv (reused when present) and start the dashboard on the built-in demo
#   make test   set up .venv with dev tools (+ Debian's chromium when root) and run the whole suite
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
ADDRESS ?= 127.0.0.1
PIP_QUIET := --quiet --disable-pip-version-check
# pip on some machines lists find-links/index folders that do not exist; hide those warnings only.
# (grep's own "nothing left" status is neutralised; pip's failure still fails the pipeline.)
PIPFILTER := { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: run test test-fast bench install install-dev chromium node clean-cache help
help:
	@sed -n '1,4p' Makefile

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime-installed: requirements.txt pyproject.toml | $(PY)
	$(PY) -m pip install $(PIP_QUIET) -r requirements.txt 2>&1 | $(PIPFILTER)
	$(PY) -m pip install $(PIP_QUIET) --no-deps -e . 2>&1 | $(PIPFILTER)
	$(PY) -c "import torch, torchvision, timm, streamlit, umap, tldiag"
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.runtime-installed
	$(PY) -m pip install $(PIP_QUIET) -r requirements-dev.txt 2>&1 | $(PIPFILTER)
	touch $@

install: $(VENV)/.runtime-installed
install-dev: $(VENV)/.dev-installed

run: install
	@$(PY) -m tldiag.access "$(ADDRESS)"  # refuses an address other machines reach without sign-in
	@echo "tldiag dashboard: http://$(ADDRESS):$(PORT)  (Ctrl-C stops it)"
	$(VENV)/bin/streamlit run app.py --server.address=$(ADDRESS) --server.port=$(PORT) \
		--server.headless=true --browser.gatherUsageStats=false

chromium:
	@if [ -n "$$CHROMIUM" ] && [ -x "$$CHROMIUM" ]; then exit 0; fi; \
	if command -v chromium >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "The browser tests need Chromium. Install it (Debian/Ubuntu: sudo apt-get install chromium)" \
		     "or point CHROMIUM=/path/to/chrome at an existing Chrome/Chromium, then run make test again."; \
		exit 1; \
	fi

# the sign-in browser test starts a real OpenID Connect provider (npm's oauth2-mock-server) on 127.0.0.1
node:
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's nodejs and npm for the sign-in test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	else \
		echo "The sign-in test needs Node.js 20+ with npm. Install it (Debian/Ubuntu: sudo apt-get install nodejs npm)," \
		     "then run make test again."; \
		exit 1; \
	fi

# one worker per core, at most 4 (TEST_WORKERS=1 runs in one process); a test file stays on one worker, so that
# its module fixtures (a Ray cluster, a server) start once
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(4, len(os.sched_getaffinity(0))))")
test: install-dev chromium node
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: install-dev
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow and not browser"

bench: install
	$(PY) -m tldiag.bench embed

# caches only: jobs, their checkpoints and the registry of fine-tuned models stay
clean-cache:
	H="$${TLDIAG_HOME:-$$HOME/.cache/tldiag}"; rm -rf "$$H/embeddings" "$$H/projections" "$$H/leaderboard" \
		"$$H/scans" "$$H/analyses" "$$H/throughput.json"
