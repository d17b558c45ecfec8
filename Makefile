# vidjobs developer commands. `make test` is the one CI runs (through .ci/run).
PYTHON ?= python3.11
VENV   := .venv
STAMP  := $(VENV)/.vidjobs-install-stamp
ARGS   ?=

.PHONY: install demo up test bench services services-stop

# Create the venv and install the project with its dev extras. The stamp holds the hash of
# pyproject.toml (scripts/test uses the same stamp), so this re-installs only when it changes.
install:
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@want=$$(sha256sum pyproject.toml | cut -d' ' -f1); \
	if [ "$$(cat $(STAMP) 2>/dev/null)" != "$$want" ]; then \
		echo "==> pip install -e '.[dev]'"; \
		$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' \
			&& echo "$$want" > $(STAMP); \
	fi

demo: install
	$(VENV)/bin/vidjobs demo

up: install
	$(VENV)/bin/vidjobs up

# Lint, types, import contracts and pytest, with a private PostgreSQL and Kafka.
# Pass pytest arguments with ARGS, e.g. make test ARGS="-k keys -x".
test:
	scripts/test $(ARGS)

bench: install
	$(VENV)/bin/python -m bench --jobs 10000

# Start (or reuse) the test PostgreSQL and Kafka and print their export lines.
services:
	@$(PYTHON) scripts/services.py env

services-stop:
	$(PYTHON) scripts/services.py stop-all
