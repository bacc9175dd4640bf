# Cross-Entropy, Derived: two commands to remember, `make book` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(abspath $(VENV))/bin
# Kernels started by Jupyter must find the course environment's python first.
export PATH := $(BIN):$(PATH)
export PYTHONHASHSEED := 0

CHAPTER_SOURCES := $(sort $(wildcard chapters/[0-9][0-9]_*.md))
CHAPTER_NOTEBOOKS := $(CHAPTER_SOURCES:.md=.ipynb)
LIBRARY := $(wildcard xentlib/*.py)
MATHJAX := _mathjax/mathjax/es5/tex-mml-chtml.js
BOOK_SOURCES := _config.yml _toc.yml references.bib $(wildcard *.md) $(wildcard chapters/*.md) \
    $(wildcard _static/*) tools/sphinx_offline.py $(LIBRARY)

.PHONY: help install book notebooks test bench bench-large-vocab lab clean
help:
	@echo "make book   create .venv if needed, install, re-execute changed chapters, build _build/html"
	@echo "make test   every test: library, doctests, notebooks (nbval strict), the built book"
	@echo "make lab    open the chapters in JupyterLab"
	@echo "make bench  xentlib against torch and SciPy: speed and memory as ratios, accuracy in ULP"
	@echo "make bench-large-vocab  chunked linear cross-entropy against the naive loss (full size on CUDA)"

install: $(VENV)/.installed
$(VENV)/.installed: requirements.txt requirements-lock.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c requirements-lock.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(MATHJAX): tools/fetch_mathjax.sh
	bash tools/fetch_mathjax.sh _mathjax/mathjax

# A chapter's notebook (the outputs readers see and nbval checks) is re-made from its MyST
# source whenever the source or the library changes.
chapters/%.ipynb: chapters/%.md $(LIBRARY) tools/execute_chapters.py | $(VENV)/.installed
	$(PY) tools/execute_chapters.py $<

notebooks: $(CHAPTER_NOTEBOOKS)

_build/html/index.html: $(VENV)/.installed $(MATHJAX) $(CHAPTER_NOTEBOOKS) $(BOOK_SOURCES)
	$(BIN)/jupyter-book build . -W -n --keep-going
	touch $@

book: _build/html/index.html
	@echo "The book is at _build/html/index.html"

# The build is a test too: it runs with warnings as errors before anything else.
test: $(VENV)/.installed $(MATHJAX)
	$(BIN)/jupyter-book build . -W -n --keep-going
	$(PY) -m pytest tests xentlib chapters --nbval --nbval-current-env \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_cross_entropy.py
	$(PY) benchmarks/bench_accuracy.py

bench-large-vocab: $(VENV)/.installed
	$(PY) benchmarks/bench_large_vocab.py

lab: $(VENV)/.installed
	$(BIN)/jupyter lab chapters

clean:
	rm -rf _build
