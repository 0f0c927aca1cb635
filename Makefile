# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-slow bench reproduce clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision first: on this project's machines 2.14.1/0.29.1 are served from local disk.
	$(PY) -m pip install -q "torch>=2.2,<=2.14.1" "torchvision>=0.17,<=0.29.1"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	WANDB_MODE=$${WANDB_MODE:-offline} $(PY) scripts/fit.py --config configs/mtgm.yaml

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) scripts/bench.py

reproduce: $(STAMP)
	$(PY) scripts/reproduce.py mtgm

clean:
	rm -rf runs wandb .pytest_cache
