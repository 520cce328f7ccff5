# Two entry points on a fresh machine: `make run` (serve the bundled models) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
HOST   ?= 0.0.0.0
PORT   ?= 8000
FONT_PACKAGES := fonts-dejavu-core fonts-liberation2 fonts-freefont-ttf fonts-noto-mono fonts-ocr-b

.PHONY: run test fonts install-serve install-all bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Serving needs only onnxruntime and the web stack (no torch).
$(VENV)/.serve-installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[serve]'
	touch $@

# Tests, training and benchmarks need everything.
$(VENV)/.all-installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[serve,train,dev]'
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

run: install-serve
	$(VENV)/bin/uvicorn service.api.app:create_app --factory --host $(HOST) --port $(PORT)

test: install-all fonts
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
