# hdhub: `make run` serves the whole platform on embedded defaults; `make test` installs
# everything it needs and runs the tests. `make help` lists the rest.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3.11
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: help install openapi-lint-tools xpath-reference conformance conformance-report services deploy-tools openssh chromium run test unit e2e proto proto-check lint bench bench-check helm kustomize clean assets messages screenshots

help: ## Show the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(UV):
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check 'uv>=0.5,<1'

$(BIN)/hdhub: $(UV) pyproject.toml uv.lock libs/*/pyproject.toml services/*/pyproject.toml
	@# Bytecode compiled once here: with PYTHONDONTWRITEBYTECODE set (as on our CI machines)
	@# every process would otherwise compile its dependencies from source at start-up
	@# (seconds of CPU each, bench/README.md), and the e2e tests start dozens of them.
	$(UV) sync --frozen --python $(PYTHON) --compile-bytecode
	@touch $@

install: $(BIN)/hdhub ## Create .venv with every service and the dev tools

services: ## Make sure PostgreSQL and Redis answer on 127.0.0.1 (installs them from Debian if missing)
	@bash tools/ensure-services.sh

run: install ## The whole platform on embedded defaults with demo data, at http://127.0.0.1:8000 (another port: make run PORT=8001)
	HDHUB_LOG_FORMAT=$${HDHUB_LOG_FORMAT:-console} $(BIN)/hdhub run all --port $(PORT)

openssh: ## Make sure OpenSSH's sftp client and sftp-server are there for the intake tests and bench (Debian's if missing)
	@bash tools/ensure-openssh.sh

deploy-tools: ## Make sure `kubectl kustomize` and `promtool` are there for the deploy and alert checks (Debian's if missing)
	@bash tools/ensure-kubectl.sh
	@bash tools/ensure-promtool.sh

chromium: ## Make sure Debian's Chromium is at /usr/bin/chromium for the portal's browser tests (installs it if missing)
	@bash tools/ensure-chromium.sh

OPENAPI_LINT := tools/openapi-lint
$(OPENAPI_LINT)/node_modules/.installed: $(OPENAPI_LINT)/package.json $(OPENAPI_LINT)/package-lock.json
	@# Redocly, Spectral, openapi-typescript, openapi-fetch and tsc at the versions of
	@# package-lock.json (npm's cache makes a re-install offline).
	@if command -v npm >/dev/null; then \
		cd $(OPENAPI_LINT) && npm ci --no-audit --no-fund --prefer-offline && touch node_modules/.installed; \
	else echo "npm not found: the OpenAPI lint and TypeScript client tests (tests/openapi) will skip"; fi

openapi-lint-tools: $(OPENAPI_LINT)/node_modules/.installed ## Install Redocly, Spectral and the TypeScript client tools (npm) for tests/openapi

XPATH_REFERENCE := tools/xpath-reference
$(XPATH_REFERENCE)/node_modules/.installed: $(XPATH_REFERENCE)/package.json $(XPATH_REFERENCE)/package-lock.json
	@# Enketo's openrosa-xpath-evaluator on jsdom, at the versions of package-lock.json.
	@if command -v npm >/dev/null; then \
		cd $(XPATH_REFERENCE) && npm ci --no-audit --no-fund --prefer-offline && touch node_modules/.installed; \
	else echo "npm not found: the differential test against Enketo's evaluator will skip"; fi

xpath-reference: $(XPATH_REFERENCE)/node_modules/.installed ## Install Enketo's XPath evaluator (npm), the reference the expression engine is compared with

conformance: install xpath-reference ## The expression engine against Enketo's evaluator on 10,000 cases, and the XLSForm cases; prints the agreement
	HDHUB_CONFORMANCE_EXAMPLES=$${HDHUB_CONFORMANCE_EXAMPLES:-10000} $(BIN)/pytest -s -p no:randomly services/registrations/tests/conformance $(PYTEST_ARGS)

conformance-report: install ## Rewrite docs/dcd-format.md's conformance tables from the XLSForm and function cases
	$(BIN)/python tools/conformance_report.py

SEPARATE_TESTS = tests/e2e/test_tracing.py tests/e2e/test_tracing_journeys.py tests/observability/test_alerts.py

test: install services deploy-tools openssh chromium openapi-lint-tools xpath-reference ## Install, then run every test (unit, integration on PostgreSQL/Redis/SQLite, e2e)
	@# The OTLP trace tests and the alert timelines run in a pytest process of their own:
	@# after the rest of the suite in one process, the traced platform's exporter stops after
	@# its start-up spans, and the earlier tests' registrations (still delivered and
	@# confirmed by the shared stack's workers) call the central platform on the alerts'
	@# manual clock. It runs beside the main one (its own databases, ports and clock); its
	@# output follows the main one's.
	@mkdir -p var; \
	$(BIN)/pytest $(PYTEST_ARGS) -p no:cacheprovider $(SEPARATE_TESTS) > var/test-separate.log 2>&1 & separate=$$!; \
	main=0; $(BIN)/pytest $(PYTEST_ARGS) --durations=25 $(SEPARATE_TESTS:%=--deselect %) || main=$$?; \
	other=0; wait $$separate || other=$$?; \
	echo "--- the trace and alert tests, run beside the others in a pytest process of their own ---"; \
	cat var/test-separate.log; \
	exit $$(( main != 0 ? main : other ))

unit: install ## Only the tests that need no database server
	$(BIN)/pytest -m "not postgres and not e2e" $(PYTEST_ARGS)

e2e: install services openssh ## Start `hdhub run all` as a process and drive it over HTTP
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

helm: install ## Lint and render deploy/helm/hdhub for every values file, validate it (offline)
	$(BIN)/pytest -q -p no:cacheprovider tests/deploy/test_helm_chart.py

kustomize: install deploy-tools ## Regenerate deploy/kustomize base and components from the chart, then build the overlays
	$(BIN)/python tools/gen_kustomize.py
	$(BIN)/pytest -q -p no:cacheprovider tests/deploy/test_kustomize.py

proto: install ## Regenerate libs/proto from proto/
	$(BIN)/python tools/gen_proto.py

proto-check: install ## Fail when the committed generated code is stale
	$(BIN)/python tools/gen_proto.py --check

lint: install ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy libs/common/src services/*/src src

bench: install services openssh ## Benchmarks; each prints a ratio against a baseline measured in the same run
	$(BIN)/python bench/bench_submissions.py
	$(BIN)/python bench/bench_validation.py
	$(BIN)/python bench/bench_sftp.py
	$(BIN)/python bench/bench_file_to_central.py
	$(BIN)/python bench/bench_nippin.py

bench-check: install services openssh ## A short run of every bench; fails when a ratio is worse than bench/baselines.json by more than its noise
	$(BIN)/python bench/check.py $(if $(ONLY),--only $(ONLY))

assets: install ## Reinstall the portal's browser assets (htmx, axe-core) from npm with the lockfile; the files are committed
	$(BIN)/python tools/vendor_assets.py

messages: install ## Extract the portal's messages and merge them into the nl, fr and de catalogues
	$(BIN)/python tools/portal_messages.py

screenshots: install services chromium ## Screenshots of every portal page (en, nl) into docs/portal/, from the browser tests
	HDHUB_SCREENSHOTS=docs/portal $(BIN)/pytest -q -p no:cacheprovider services/portal/tests/browser $(PYTEST_ARGS)

clean: ## Remove local state (var/) and caches
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
