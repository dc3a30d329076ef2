# podiflow: set-up, tests, demo and benchmark. Needs only Python >= 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
DEMO   ?= demo
export LUIGI_CONFIG_PATH ?= $(CURDIR)/luigi.cfg

.PHONY: help venv test test-fast test-fullsize demo bench clean

help:
	@echo "make test       create .venv if needed, run the default suite, then the full-size accuracy tests"
	@echo "make test-fast  the default suite only (< 10 min)"
	@echo "make demo       simulate the demo night into ./$(DEMO)/ and reduce it (local scheduler, 2 workers)"
	@echo "make bench      raw-I/O benchmark (more benchmarks arrive with the bench issue)"

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not fullsize and not online"
	$(BIN)/python -m pytest -m "fullsize and not online"

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not fullsize and not online"

test-fullsize: $(STAMP)
	$(BIN)/python -m pytest -m "fullsize and not online"

demo: $(STAMP)
	$(BIN)/podiflow simulate configs/nights/demo.toml $(DEMO)
	@for n in $(DEMO)/raw/*/; do \
	  night=$$(basename $$n); \
	  $(BIN)/podiflow index $$n --cache $(DEMO)/work/$$night/night-index.json; \
	  (cd $(DEMO) && $(abspath $(BIN))/luigi --module workflows ReduceNight --night $$night \
	     --local-scheduler --workers 2 --reduction-fixwcs true --podiflow-refcat refcat/refcat.fits) || exit $$?; \
	done
	@echo "demo: checkpoints in $(DEMO)/work/, astrometric solutions in $(DEMO)/work/*/*/fixwcs/"

bench: $(STAMP)
	$(BIN)/python bench/raw_read.py --out bench/results

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
