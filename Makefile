# Raqib: `make demo` runs the product end to end on a fresh machine; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := .ci/requirements.lock
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | sha256sum | cut -c1-12)
DATASETS ?= $(or $(RAQIB_DATASETS),../shared/datasets)
PORT ?= 8765

.PHONY: install demo test lint audit lock bench soak clean data check-serve-install check-integration

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c $(LOCK) -e '.[test,dev,bench]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

# Public corpora → data/build/public.jsonl, only when they are present beside the checkout.
data: install
	@if [ -d "$(DATASETS)" ]; then \
		$(BIN)/raqib datasets build --from "$(DATASETS)" -o data/build/public.jsonl && \
		$(BIN)/raqib datasets stats data/build/public.jsonl; \
	else echo "public corpora not found at $(DATASETS): training on the starter corpus only"; fi

demo: data
	@config=experiments/starter.toml; [ -f data/build/public.jsonl ] && config=experiments/public.toml; \
	 echo "training with $$config"; $(BIN)/raqib train --config $$config
	@$(BIN)/raqib promote || echo "champion unchanged (the gate kept it)"
	$(BIN)/raqib export --alias champion -o models/champion
	@mkdir -p var && $(BIN)/python -c 'import json; r = json.loads(open("data/seed/seed.jsonl", encoding="utf-8").readline()); print(json.dumps({"comment": {"id": r["comment_id"], "text": r["text"]}, "article": {"id": r["article_id"], "title": r["article_title"], "text": r["article_text"]}, "site": r["site"]}, ensure_ascii=False))' > var/seed-request.json
	@echo "serving models/champion on 127.0.0.1:$(PORT) and scoring the seed comment"
	@RAQIB_MODEL_DIR=models/champion $(BIN)/raqib serve --port $(PORT) & pid=$$!; trap "kill $$pid 2>/dev/null" EXIT; \
	 for i in $$(seq 120); do curl -sf http://127.0.0.1:$(PORT)/readyz >/dev/null && break; sleep 0.25; done; \
	 curl -sS -H 'Content-Type: application/json' --data-binary @var/seed-request.json \
	   http://127.0.0.1:$(PORT)/v1/score | $(BIN)/python -m json.tool --no-ensure-ascii

test: install
	@$(BIN)/pytest; status=$$?; if [ $$status -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$status

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy serving training
	@# The layout's rule: no import cycles, no package importing one above it, serving never importing training.
	$(BIN)/pytest -q -p no:cacheprovider tests/unit/test_layering.py tests/unit/test_dependency_rule.py

# Whole-deployment drills (an MLflow tracking server on PostgreSQL, `raqib train` and `raqib promote`
# against it, a server resolving the champion from it; `raqib serve --workers 2` metrics summed over
# workers): minutes, so a CI step of their own.
check-integration: install
	$(BIN)/pytest --integration -m integration

# A serving host's install: '.[serve]' in a fresh venv serves /v1/score and has no mlflow, matplotlib or Dask.
check-serve-install: install
	bash .ci/check-serve-install.sh

# Known vulnerabilities in the locked dependencies (pip-audit); says NOT AUDITED when offline.
audit: install
	$(BIN)/python .ci/audit.py

# Re-pin the dependency set after changing pyproject.toml (fresh venv, so nothing stray is pinned).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q -e '.[test,dev,bench]'
	{ head -2 $(LOCK); .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^raqib'; } > $(LOCK).new
	mv $(LOCK).new $(LOCK) && rm -rf .lock-venv

# Speed and quality report → experiments/RESULTS.md (and MLflow experiment raqib-bench).
bench: install
	$(BIN)/python -m training.bench

# 2 minutes of load on a 2-worker server, then the same with model reloads → RESULTS.md soak section.
soak: install
	$(BIN)/python -m training.bench.soak

clean:
	rm -rf $(VENV) data/build models var experiments/mlflow.db experiments/mlartifacts .pytest_cache
