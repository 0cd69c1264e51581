# The two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= ./sanctum-data

.PHONY: demo test lint venv system-deps bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/sanctum demo --data-dir $(DATA)

system-deps:
	scripts/system-deps.sh test

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests bench

test: $(BIN)/.installed system-deps lint
	$(BIN)/python -m pytest --db=sqlite
	$(BIN)/python -m pytest --db=postgresql -m "not browser"

bench: $(BIN)/.installed
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
