# Hangar: `make up` starts it on one machine, `make test` runs the whole suite.
# Everything a fresh machine lacks is installed here; slow steps are cached.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.hangar-installed

.PHONY: up install test lint typecheck pytest bench clean image image-test

$(STAMP): pyproject.toml scripts/install.sh
	PYTHON=$(PYTHON) VENV=$(VENV) scripts/install.sh
	touch $(STAMP)

install: $(STAMP)

up: install
	$(BIN)/hangar up

lint: install
	$(BIN)/ruff format --check hangar tests bench
	$(BIN)/ruff check hangar tests bench

typecheck: install
	$(BIN)/mypy hangar

pytest: install
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: install
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# The OCI image (Containerfile), from a Debian base made here: VARIANT=local|slim.
VARIANT ?= local
image: install
	scripts/image.sh $(VARIANT)

# Build it and answer runs from its read-only filesystem (under bubblewrap).
image-test: install
	scripts/image-test.sh $(VARIANT)

