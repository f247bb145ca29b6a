# The two commands: `make run` (dashboard on sample data) and `make test` (every test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export LAKE_ROOT ?= var/lake
export STATE_DB ?= var/state.sqlite
CUSTOMERS ?= 100
DAYS ?= 30

.PHONY: run run-aws-local test test-slow lint format bench install clean sample lock

# Runtime dependencies come from the hashed lock; the test tools from pyproject's extras.
$(BIN)/mission-control: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/mission-control

# Sample data once, when the lake has no uploads yet; then process and roll up what is pending.
sample: install
	@if [ ! -d "$(LAKE_ROOT)/raw/screen_time" ]; then \
		$(BIN)/mission-control generate --customers $(CUSTOMERS) --days $(DAYS) --bad 8; \
	fi
	$(BIN)/mission-control process
	$(BIN)/mission-control rollup

run: sample
	BIN=$(BIN) bash scripts/run-local.sh

# The AWS backend without an account: DynamoDB Local + SeaweedFS on loopback, sample data, dashboard.
run-aws-local: install
	bash scripts/install-test-deps.sh
	$(BIN)/python -m scripts.aws_local $(AWS_LOCAL_ARGS)

# Every tier; the long load soak is `make test-slow`.
test: install
	bash scripts/install-test-deps.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -m "not slow"

test-slow: install
	bash scripts/install-test-deps.sh
	$(BIN)/pytest -m slow

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# The browser and aws sections need Chromium and the local AWS servers.
bench: install
	bash scripts/install-test-deps.sh
	$(BIN)/python -m bench $(BENCH_ARGS)

# Re-pin the runtime dependencies after changing them in pyproject.toml.
lock:
	$(PYTHON) -m venv var/lock-venv
	var/lock-venv/bin/pip install --quiet pip-tools
	var/lock-venv/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links --output-file requirements.lock pyproject.toml

clean:
	rm -rf var artifacts
