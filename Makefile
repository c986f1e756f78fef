# Two entry points for a fresh machine: `make up` and `make test`. Both install what they need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install up test down lint conformance
install: $(BIN)/tispace
	bash scripts/install-kube.sh
	bash scripts/install-oidc.sh >/dev/null

$(BIN)/tispace: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

up: install
	$(BIN)/tispace up

# Upstream conformance (e2e.test) against a tenant of a running stack (`make up` first);
# not part of `make test`. CONFORMANCE_ARGS: e.g. --focus REGEX --skip REGEX --kubeconfig F --out DIR.
CONFORMANCE_ARGS ?=
conformance: install
	bash scripts/install-e2e-test.sh >/dev/null
	$(BIN)/python -m tispacectl.conformance $(CONFORMANCE_ARGS)

down:
	$(BIN)/tispace down

lint: $(BIN)/tispace
	$(BIN)/ruff check .
	$(BIN)/mypy tispace tispacectl vc_manager syncer vn_agent portal
	$(BIN)/lint-imports

test: install lint
	bash scripts/install-browser.sh >/dev/null
	bash scripts/install-tidb-operator.sh >/dev/null
	$(BIN)/pytest -q tests
