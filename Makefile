# The two commands a newcomer needs: `make demo` and `make test`. Everything else is a helper of theirs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test install lint typecheck unit integration faults soak smoke-tansu clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

demo: install
	$(PY) -m reviews_mtl.demo

# Style, then the layering contracts of pyproject.toml ([tool.importlinter]), then no import cycle anywhere.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) scripts/check_import_cycles.py

# Strict for the packages, relaxed for the tests (pyproject.toml).
typecheck: install
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy tests

# Unit tests: tiny random models, fakes of our own protocols; no servers.
unit: install
	$(PY) -m pytest tests/unit -q

# Integration tests against the real Apache Kafka broker (jars from Maven Central) and a real Redis.
integration: install
	./scripts/system-deps.sh
	$(PY) -m reviews_mtl.stack.apache_kafka fetch
	REVIEWS_TEST_KAFKA=apache $(PY) -m pytest tests/integration -q -rs

# The fault suite, short form (3,000 reviews a run, 4 kills); `make soak` is the long form.
faults: install
	$(PY) -m reviews_mtl.stack.apache_kafka fetch
	REVIEWS_TEST_KAFKA=apache $(PY) -m pytest tests/faults -q -rs

soak: install
	$(PY) -m reviews_mtl.stack.apache_kafka fetch
	REVIEWS_FAULT_REVIEWS=20000 REVIEWS_FAULT_KILLS=10 REVIEWS_TEST_KAFKA=apache $(PY) -m pytest tests/faults -q -rs -s

# The smoke run of the same broker-facing tests against Tansu (the embedded broker of `make demo`).
smoke-tansu: install
	REVIEWS_TEST_KAFKA=tansu $(PY) -m pytest tests/integration -q -rs -m "smoke"

test: lint typecheck unit integration faults smoke-tansu

clean:
	rm -rf $(VENV) .reviews-mtl build *.egg-info
