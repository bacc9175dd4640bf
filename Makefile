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
    $(wildcard _static/*) tools/sphinx_offline.py tools/course_repository.py $(LIBRARY)

.PHONY: help install book notebooks test nbval-generic-cpu bench bench-large-vocab lab repository clean
help:
	@echo "make book   create .venv if needed, install, re-execute changed chapters, build _build/html"
	@echo "make test   every test: library, doctests, notebooks (nbval strict, on two CPU"
	@echo "            configurations), the built book, the book and JupyterLab in a browser"
	@echo "make lab    open the chapters in JupyterLab with the course kernel (open NN_topic.md)"
	@echo "make bench  xentlib against torch and SciPy: speed and memory as ratios, accuracy in ULP"
	@echo "make repository URL=https://github.com/OWNER/REPO [BRANCH=main]"
	@echo "            publish: point the Colab/Binder buttons and install cells at a repository"
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
# source whenever the source or the library changes; the .md is re-written from it (in step).
chapters/%.ipynb: chapters/%.md $(LIBRARY) tools/execute_chapters.py tools/course_repository.py \
    | $(VENV)/.installed
	$(PY) tools/execute_chapters.py $<

notebooks: $(CHAPTER_NOTEBOOKS)

_build/html/index.html: $(VENV)/.installed $(MATHJAX) $(CHAPTER_NOTEBOOKS) $(BOOK_SOURCES)
	$(BIN)/jupyter-book build . -W -n --keep-going
	touch $@

book: _build/html/index.html
	@echo "The book is at _build/html/index.html"

NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

# The build is a test too: it runs with warnings as errors before anything else.
test: $(VENV)/.installed $(MATHJAX)
	$(BIN)/jupyter-book build . -W -n --keep-going
	$(PY) -m pytest tests xentlib chapters $(NBVAL)
	$(MAKE) --no-print-directory -o $(VENV)/.installed nbval-generic-cpu

# The chapters again on the most generic code paths PyTorch, OpenBLAS and NumPy offer at run
# time: an output that depends on the CPU fails nbval strict here. NumPy refuses to disable its
# baseline, so this disables exactly the SIMD targets it dispatches to on this machine.
nbval-generic-cpu: $(VENV)/.installed
	ATEN_CPU_CAPABILITY=default OPENBLAS_CORETYPE=Sandybridge \
	NPY_DISABLE_CPU_FEATURES="$$($(PY) -c 'from numpy._core._multiarray_umath import \
	    __cpu_dispatch__; print(" ".join(__cpu_dispatch__))')" \
	    $(PY) -m pytest chapters $(NBVAL)

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_cross_entropy.py
	$(PY) benchmarks/bench_accuracy.py

bench-large-vocab: $(VENV)/.installed
	$(PY) benchmarks/bench_large_vocab.py

# Open chapters/NN_topic.md: jupytext shows it as a notebook with the outputs of NN_topic.ipynb
# and saves both. Offline, on 127.0.0.1 (tools/jupyter_lab_config.py).
lab: $(VENV)/.installed
	$(BIN)/jupyter lab --config=tools/jupyter_lab_config.py chapters

# Where the course is published (empty URL: nowhere, no launch buttons). See README.
repository:
	$(if $(filter undefined,$(origin URL)),$(error make repository URL=https://github.com/OWNER/REPO \
	    [BRANCH=main], or URL= to unpublish))
	$(PY) tools/course_repository.py "$(URL)" $(or $(BRANCH),main)

clean:
	rm -rf _build
