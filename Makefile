# The two commands of the README:  make book   and   make test
# Both create .venv on first use and install the pinned package set (constraints.txt).

PYTHON ?= python3
VENV   := .venv
BOOK   ?= .
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JB_FLAGS := -W --keep-going -n
# The configuration the book targets build with: `make book` is the offline edition
# (config.yaml), `make book CONFIG=editions/published.yaml` the published site's.
ifndef CONFIG
CONFIG := $(or $(ANISOTROPY_BOOK_CONFIG),config.yaml)
endif
FAST     := not slow and not site

.DEFAULT_GOAL := help

## This list: every target with what it does.
help:
	@awk '/^## /{doc = doc substr($$0, 4) " "; next} /^[a-z][a-z-]*:/{if (doc) {sub(":.*", "", $$1); printf "  make %-14s %s\n", $$1, doc}; doc = ""} !/^## /{doc = ""}' $(MAKEFILE_LIST)

.PHONY: help book site models pdf test check lint install browser notebooks clean clean-results bench

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "This book needs Python 3.11 or newer (Altair 6 requires it); found " + sys.version.split()[0] + ". Install Python 3.11+ and run again, e.g. make book PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	# torch first, pinned, so pip never reaches for a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

## Create .venv and install the pinned package set (every other target does this first).
install: $(STAMP)

# Chapters and `python -m helpers` read the configuration from this variable.
book models site pdf: export ANISOTROPY_BOOK_CONFIG := $(abspath $(CONFIG))

## The site: train the models (progress bars), execute every chapter, build _build/html.
## CONFIG=FILE builds another edition, e.g. make book CONFIG=editions/published.yaml
book: models
	@# The execution cache and Sphinx's environment key on chapter text only: drop both when
	@# helpers, the configuration or data change, so every chapter is executed and read again.
	@mkdir -p _build; h=$$( { echo "$(abspath $(CONFIG))"; cat helpers/*.py "$(CONFIG)" book/_ext/*.py $$(find data -type f | sort); } | sha256sum | cut -c1-16); \
	  if [ "$$(cat _build/.inputs-hash 2>/dev/null)" != "$$h" ]; then rm -rf _build/.jupyter_cache _build/.doctrees; echo "$$h" > _build/.inputs-hash; fi
	$(MAKE) --no-print-directory site

## Train (or reuse) every model the chapters use, with progress bars, before the site build.
models: $(STAMP)
	$(BIN)/python -m helpers train

## Build the book in $(BOOK) strictly: any warning or failing cell fails it (also used by the tests).
site: $(STAMP)
	$(BIN)/jupyter-book build $(BOOK) $(JB_FLAGS)

## The printable book, _build/pdf/book.pdf: every page in table-of-contents order, printed by
## Debian's Chromium. Run after `make book`: the single-page edition reuses its execution cache.
pdf: models browser
	$(BIN)/jupyter-book build $(BOOK) --builder singlehtml $(JB_FLAGS)
	$(BIN)/python -m tools.print_book $(BOOK)/_build/singlehtml $(BOOK)/_build/pdf/book.pdf

## Chromium for the browser check and the PDF, poppler-utils to read the PDF back
## (Debian packages; needs root or sudo).
browser:
	@{ command -v chromium && command -v pdftotext; } >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium poppler-utils >/dev/null; }

## Everything (the README's test command, run by CI): all tests, a strict build of the real
## book, the OpenStax claims, a browser check of every page; installs Chromium (root or sudo).
test: $(STAMP) browser
	$(BIN)/python -m pytest --doctest-modules helpers tests

## The fast loop before a commit (under 2 minutes, no browser, no sudo): ruff, the tests
## that neither train nor build, and the doctests of helpers/.
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -m "$(FAST)" --doctest-modules helpers tests

## Only the ruff checks (package, tests, benchmarks and the chapters' code); part of `make test`.
lint: $(STAMP)
	$(BIN)/python -m pytest tests/test_lint.py

## Chapters as notebooks (notebooks/*.ipynb) and scripts (scripts/*.py), generated from chapters/*.md.
notebooks: $(STAMP)
	$(BIN)/jupytext --sync chapters/*.md

## The quick benchmarks (RESULT lines); the long ones are run by hand, see the README.
bench: $(STAMP)
	$(BIN)/python bench/embed_overhead.py
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/build_warm_cold.py

## Remove the built site, notebooks and scripts (keeps trained models and caches).
clean:
	rm -rf _build notebooks scripts

## Remove results/: trained models and embedding caches (the next build retrains).
clean-results:
	rm -rf results
