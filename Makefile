# The two commands a newcomer needs: `make demo` and `make test`. Everything else is a helper of theirs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test install lint lint-k8s lint-docker typecheck unit integration faults soak smoke-tansu \
	compose-test compose-clean clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

demo: install
	$(PY) -m reviews_mtl.demo

# Style, then the layering contracts of pyproject.toml ([tool.importlinter]), then no import cycle anywhere,
# then the deployment files: Kubernetes manifests (kubeconform) and Dockerfiles (hadolint).
lint: install lint-k8s lint-docker
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) scripts/check_import_cycles.py

# deploy/k8s against the Kubernetes and KEDA schemas, offline (tools cached in ~/.cache/reviews-mtl/tools).
lint-k8s: install
	PY=$(PY) ./scripts/lint-k8s.sh

# Every Dockerfile: the three images and the compose test's stand-ins (hadolint from the dev extra).
lint-docker: install
	$(VENV)/bin/hadolint deploy/docker/Dockerfile.* tests/compose/images/*/Dockerfile

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

# docker-compose.yml for real: starts a Docker engine if none answers, builds what is missing (cached outside the
# clone), up, stream, scale to 3 consumers, verify, stop, remove. Where no engine can run it says why in one
# line and skips, except under CI=true, where that fails. compose-clean removes the images it built.
compose-test: install
	PY=$(PY) ./scripts/compose-ci.sh test

compose-clean:
	PY=$(PY) ./scripts/compose-ci.sh clean

test: lint typecheck unit integration faults smoke-tansu compose-test

clean:
	rm -rf $(VENV) .reviews-mtl build *.egg-info
