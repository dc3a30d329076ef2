# podiflow: set-up, tests, demo and benchmark. Needs only Python >= 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
DEMO   ?= demo
SCHEDULER ?= scheduler
SCHEDULER_ADDRESS ?= 127.0.0.1
export LUIGI_CONFIG_PATH ?= $(CURDIR)/luigi.cfg

.PHONY: help venv test test-fast test-fullsize install-check docs demo scheduler bench clean

help:
	@echo "make test       create .venv if needed, run the default suite, then the full-size accuracy tests"
	@echo "make test-fast  the default suite only (< 10 min)"
	@echo "make install-check  build a wheel, install it in a fresh venv and, outside the checkout, simulate a"
	@echo "                shipped night and reduce one exposure with podi_collectcells (as CI does)"
	@echo "make docs       build the documentation (user guide and API reference) into docs/_build/html"
	@echo "make demo       simulate the demo night into ./$(DEMO)/ and reduce it (local scheduler, 2 workers)"
	@echo "make scheduler  run luigid on $(SCHEDULER_ADDRESS):8082 (web UI), state, logs, task history in ./$(SCHEDULER)/"
	@echo "make bench      speed and memory vs a floor -> bench/results/bench.{md,json}; 2 idle cores: ~30 min,"
	@echo "                BENCH_ARGS=--quick ~20 min (+~20 min simulation once, cached in \$$TMPDIR/podiflow-bench-data)"

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench,docs]'
	@touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not fullsize and not online"
	$(BIN)/python -m pytest -m "fullsize and not online"

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not fullsize and not online"

test-fullsize: $(STAMP)
	$(BIN)/python -m pytest -m "fullsize and not online"

install-check: $(STAMP)
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  $(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir "$$tmp" . ; \
	  $(PYTHON) -m venv "$$tmp/venv"; \
	  "$$tmp/venv/bin/python" -m pip install --quiet "$$tmp"/podiflow-*.whl; \
	  mkdir "$$tmp/run"; cd "$$tmp/run"; \
	  env -u LUIGI_CONFIG_PATH "$$tmp/venv/bin/podiflow" simulate test-small night; \
	  cd night; exposure=$$(ls -d raw/*/* | tail -1); \
	  env -u LUIGI_CONFIG_PATH PODIFLOW_CACHE_DIR="$$tmp/cache" "$$tmp/venv/bin/podi_collectcells" "$$exposure" "$$tmp/run/out.fits" -noqaplots; \
	  "$$tmp/venv/bin/python" -c "import sys; from astropy.io import fits; h = fits.open(sys.argv[1]); \
	    n = sum(x.name.startswith('OTA') for x in h); assert n == 13, n; print('install-check: wheel installed,', n, 'OTAs reduced')" \
	    "$$tmp/run/out.fits"

docs: $(STAMP)
	$(BIN)/python -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

demo: $(STAMP)
	$(BIN)/podiflow simulate demo $(DEMO) --fz
	@sed -e 's|^refcat =.*|refcat = refcat/refcat.fits|' -e 's|^\[reduction\]|[reduction]\nfixwcs = true\nphotcalib = true|' \
	  luigi.cfg > $(DEMO)/luigi.cfg
	cd $(DEMO) && LUIGI_CONFIG_PATH=$(abspath $(DEMO))/luigi.cfg $(abspath $(BIN))/podiflow reduce \
	  $$(ls raw | paste -sd, -) --workers 2
	@echo "demo: final MEFs and QA plots in $(DEMO)/out/<night>/<obsid>/, the night summary in" \
	  "$(DEMO)/out/<night>/summary.html, checkpoints and masters in $(DEMO)/work/<night>/"

scheduler: $(STAMP)
	@mkdir -p $(SCHEDULER)/logs
	@sed -e 's|^record_task_history = false|record_task_history = true|' luigi.cfg > $(SCHEDULER)/luigi.cfg
	@printf '\n[task_history]\ndb_connection = sqlite:///%s/history.sqlite\n' $(abspath $(SCHEDULER)) \
	  >> $(SCHEDULER)/luigi.cfg
	LUIGI_CONFIG_PATH=$(abspath $(SCHEDULER))/luigi.cfg $(BIN)/luigid --address $(SCHEDULER_ADDRESS) --port 8082 \
	  --state-path $(abspath $(SCHEDULER))/state.pickle --logdir $(abspath $(SCHEDULER))/logs

bench: $(STAMP)
	$(BIN)/python -m bench.run --out bench/results $(BENCH_ARGS)
	$(BIN)/python bench/raw_read.py --out bench/results

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache docs/_build docs/generated
