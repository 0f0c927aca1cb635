# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-slow lint bench reproduce clean data

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	WANDB_MODE=$${WANDB_MODE:-offline} $(PY) scripts/fit.py --config configs/mtgm.yaml

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# Fashion-MNIST for the CPU-scale image experiment (configs/fashion_*.yaml): Debian's dataset-fashion-mnist
# installs the four IDX files under /usr/share/datasets/fashion-mnist (MNIST itself is downloaded by torchvision).
data:
	@if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
	  echo "Fashion-MNIST present in /usr/share/datasets/fashion-mnist"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update && $$SUDO apt-get install -y dataset-fashion-mnist; \
	else \
	  echo "no apt-get: put train-images-idx3-ubyte.gz and friends into a folder and set data.init_args.root" >&2; exit 1; \
	fi

bench: $(STAMP)
	$(PY) scripts/bench.py

reproduce: $(STAMP)
	$(PY) scripts/reproduce.py mtgm

clean:
	rm -rf runs wandb .pytest_cache
