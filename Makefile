# Two entry points on a fresh machine: `make run` (serve the bundled models) and `make test`.
# Python 3.11, 3.12 or 3.13: the first of python3, python3.11, python3.12, python3.13 in that range, or PYTHON=...
SUPPORTED := 3.11 3.12 3.13
ifndef PYTHON
PYTHON := $(shell for p in python3 python3.11 python3.12 python3.13; do \
	v=$$($$p -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue; \
	case " $(SUPPORTED) " in (*" $$v "*) command -v $$p; break;; esac; done)
endif
VENV   ?= .venv
PY     := $(VENV)/bin/python
HOST   ?= 0.0.0.0
PORT   ?= 8000
# Every install takes the versions tested here (regenerate with tools/freeze_constraints.py).
PIP_INSTALL := $(PY) -m pip install -q -c constraints.txt
FONT_PACKAGES := fonts-dejavu-core fonts-liberation2 fonts-freefont-ttf fonts-noto-mono fonts-ocr-b
# Browser test of /docs offline (tests/test_docs_offline.py) and nginx behaviour (tests/test_deploy.py).
TEST_PACKAGES := chromium nginx-light

ifeq ($(strip $(PYTHON)),)
$(error no Python $(SUPPORTED) found: install one (e.g. `sudo apt-get install python3.12-venv`) or run `make PYTHON=/path/to/python3.12 ...`)
endif
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
ifeq ($(PYTHON_VERSION),)
$(error PYTHON=$(PYTHON) does not run: pass a working Python $(SUPPORTED), e.g. `make PYTHON=/usr/bin/python3.12 ...`)
endif
ifeq ($(filter $(PYTHON_VERSION),$(SUPPORTED)),)
$(error PYTHON=$(PYTHON) is Python $(PYTHON_VERSION); OCRNet needs $(SUPPORTED): run e.g. `make PYTHON=python3.12 ...`)
endif
# Names the interpreter the venv was made with: another Python (or a half-made venv) gets a fresh venv.
VENV_STAMP := $(VENV)/.made-with-python-$(PYTHON_VERSION)

.PHONY: run test fonts test-deps install-serve install-all constraints clean

$(VENV_STAMP):
	@if [ -x $(PY) ] && [ "$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$(PYTHON_VERSION)" ]; then \
	  echo "$(VENV): reusing it (Python $(PYTHON_VERSION))"; \
	else \
	  if [ -e $(VENV) ]; then echo "$(VENV) was made by another Python: rebuilding it with $(PYTHON) ($(PYTHON_VERSION))"; fi; \
	  rm -rf $(VENV) && $(PYTHON) -m venv $(VENV) && $(PY) -m pip install -q --upgrade pip; \
	fi
	rm -f $(VENV)/.made-with-python-* && touch $@

# Serving needs only onnxruntime and the web stack (no torch).
$(VENV)/.serve-installed: pyproject.toml constraints.txt $(VENV_STAMP)
	$(PIP_INSTALL) -e '.[serve]'
	touch $@

# Tests, training and benchmarks need everything.
$(VENV)/.all-installed: pyproject.toml constraints.txt $(VENV_STAMP)
	@[ "$(PYTHON_VERSION)" = 3.11 ] || echo "note: torch 2.13.0 for Python $(PYTHON_VERSION) comes from PyPI with its CUDA libraries" \
	  "(several GB); the tested CPU-only wheel is for 3.11 (make PYTHON=python3.11 test)"
	$(PIP_INSTALL) -e '.[serve,train,dev]'
	touch $@ $(VENV)/.serve-installed

install-serve: $(VENV)/.serve-installed
install-all: $(VENV)/.all-installed

# Fonts for synthetic data and rendered test images come from Debian packages.
fonts:
	@if ! [ -f /usr/share/fonts/opentype/ocr-b/OCRB.otf ] || ! [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(FONT_PACKAGES) >/dev/null; \
	  else \
	    echo "missing fonts: sudo apt-get install $(FONT_PACKAGES)"; \
	  fi; \
	fi

# Chromium and nginx for the tests that drive them (they skip, saying so, when these are missing).
test-deps: fonts
	@missing=; command -v chromium >/dev/null || missing=1; \
	{ command -v nginx || [ -x /usr/sbin/nginx ]; } >/dev/null || missing=1; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TEST_PACKAGES) >/dev/null; \
	  else \
	    echo "optional test tools missing (those tests skip): sudo apt-get install $(TEST_PACKAGES)"; \
	  fi; \
	fi

run: install-serve
	$(VENV)/bin/uvicorn service.api.app:create_app --factory --host $(HOST) --port $(PORT)

test: install-all test-deps
	$(PY) -m pytest -q

# After an upgrade that passed `make test`: pin what was tested.
constraints: install-all
	$(PY) tools/freeze_constraints.py

clean:
	rm -rf $(VENV) .pytest_cache
