# embstore developer entry points. On a fresh machine:
#   make demo   -> venv + install + build a small store from bundled photos, print summary/selection
#   make test   -> venv + install + the whole test suite (pytest, examples included)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: install demo test lint docs bench clean

$(VENV)/.installed: pyproject.toml setup.py embstore/store/_halfconv.c
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e ".[all,test,docs]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) examples/demo.py

test: install
	$(PY) -m pytest -q -p no:cacheprovider --timeout=900

# style and type gates (configured in pyproject.toml: [tool.ruff], [tool.mypy])
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

docs: install
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html

bench: install
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf docs/_build .pytest_cache build *.egg-info
