# ivlib — every command bootstraps its own virtual environment; nothing needs installing by hand.
# Quick start (README): `make demo` runs the demo, `make test` runs every test.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MIN_VENV := .venv-min
# The oldest jax/flax we promise to run on (Colab's TPU runtime, late 2026); `make test-min` checks it.
MIN_PINS := "jax[cpu]==0.7.2" "flax==0.11.2"
NOTEBOOKS_MD := $(sort $(wildcard notebooks/[0-9]*.md))
NOTEBOOKS_IPYNB := $(NOTEBOOKS_MD:.md=.ipynb)
export XLA_FLAGS ?= --xla_cpu_multi_thread_eigen=true
export PYTHONHASHSEED := 0

.PHONY: all demo test test-unit test-notebooks test-min book book-check notebooks benchmarks clean

all: test

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,book]"
	touch $@

$(MIN_VENV)/bin/.installed: pyproject.toml
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/pip install --quiet --upgrade pip
	$(MIN_VENV)/bin/pip install --quiet $(MIN_PINS) -e ".[dev]"
	touch $@

# The generated .ipynb are never committed: the MyST .md files are the one source.
notebooks/%.ipynb: notebooks/%.md $(BIN)/.installed
	$(BIN)/jupytext --quiet --to ipynb --output $@ $<

notebooks: $(NOTEBOOKS_IPYNB)

DEMO_PROMPT ?= the red digit 3 moving left
# Text -> video with the shipped toy cascade (offline, CPU, nothing trains); prints where the video is.
demo: $(BIN)/.installed
	$(BIN)/ivlib generate "$(DEMO_PROMPT)" --out outputs/demo.mp4 --all-stages

# Everything: unit tests and every notebook under nbval (one pytest call), the unit tests again on the
# oldest supported jax/flax, and a build of the book from the executed notebooks' sources.
test: test-unit-and-notebooks test-min book-check

test-unit-and-notebooks: $(BIN)/.installed $(NOTEBOOKS_IPYNB)
	$(BIN)/python -m pytest tests $(NOTEBOOKS_IPYNB) --nbval-lax --durations=10 -q

test-min: $(MIN_VENV)/bin/.installed
	$(MIN_VENV)/bin/python -m pytest tests -q -m "not notebooks"

# The book with every chapter executed (what readers see).
book: $(BIN)/.installed
	$(BIN)/jupyter-book build . --config book/_config.yml --toc book/_toc.yml --path-output book

# CI: the book's structure, cross-references and MyST must build; execution is covered by nbval above.
book-check: $(BIN)/.installed
	sed 's/execute_notebooks: .*/execute_notebooks: "off"/' book/_config.yml > book/_config_check.yml
	$(BIN)/jupyter-book build . --config book/_config_check.yml --toc book/_toc.yml --path-output book/_build_check --warningiserror --quiet
	rm -f book/_config_check.yml

benchmarks: $(BIN)/.installed
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) $(MIN_VENV) book/_build book/_build_check notebooks/*.ipynb
