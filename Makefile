# Mailcloak: `make run` to try it on this machine, `make test` to run every check.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install -q --disable-pip-version-check -c constraints.txt

.PHONY: run test test-sqlite test-postgres lint typecheck validate-deploy install install-test lock clean model soak

$(VENV)/.installed-run: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "Cannot create a virtualenv: install Python's venv module first" \
	       "(Debian/Ubuntu: apt-get install python3-venv)." >&2; exit 1; }
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-run
	$(PIP) -e '.[test]'
	touch $@

install: $(VENV)/.installed-run
install-test: $(VENV)/.installed-test

run: install
	$(BIN)/mailcloak run

test: install-test lint typecheck validate-deploy test-sqlite test-postgres

lint: install-test
	$(BIN)/ruff check src tests bench

typecheck: install-test
	$(BIN)/mypy

# deploy/: systemd units, compose file, Dockerfiles, Rspamd configuration.
validate-deploy: install-test
	VENV=$(VENV) scripts/validate-deploy

test-sqlite: install-test
	$(BIN)/pytest $(PYTEST_ARGS)

test-postgres: install-test
	scripts/with-postgres $(BIN)/pytest $(PYTEST_ARGS)

# Long runs, not part of `make test` (about an hour): kill -9 of smtpd and workers under
# load, round after round, against a throwaway PostgreSQL (sent/accepted/delivered/lost/
# duplicated); 10,000 malformed MIME messages and the whole corpus through the end of DATA;
# SMTP memory over 10,000 hostile sessions; 5,000 fresh SMTP fuzz examples; ten minutes of
# sustained load with memory that must stay flat; RCPT latency beside 1,000,000 aliases; fresh
# mail beside 100,000 deferred deliveries. docs/benchmarks.md has the latest figures.
SOAK_ARGS ?= --messages 5000 --rounds 5
CORPUS ?= ../shared/corpus
soak: install-test
	scripts/with-postgres $(BIN)/python bench/soak.py $(SOAK_ARGS)
	$(BIN)/python bench/fuzz_mime.py --cases 10000 --seed 9
	@if [ -d $(CORPUS) ]; then $(BIN)/python bench/fuzz_mime.py --corpus $(CORPUS); \
	  else echo "skipped: the corpus pass ($(CORPUS) is absent)"; fi
	$(BIN)/python bench/smtp_memory.py --connections 10000
	MAILCLOAK_TEST_FUZZ_EXAMPLES=5000 $(BIN)/pytest -q tests/test_fuzz_smtp.py
	scripts/with-postgres $(BIN)/python bench/sustained.py --rate 60 --duration 600 \
	  --warmup 180 --max-rss-slope 0.25
	scripts/with-postgres $(BIN)/python bench/rcpt_scale.py
	scripts/with-postgres $(BIN)/python bench/deferred_queue.py

# Retrain the builtin spam engine's shipped model on every corpus in ../shared/corpus.
model: install
	$(BIN)/mailcloak spam train --out src/mailcloak/mail/spam/model/spam-model.bin \
	  --ham $(CORPUS)/spamassassin/ham --ham $(CORPUS)/modern-ham \
	  --spam $(CORPUS)/spamassassin/spam --spam $(CORPUS)/modern-spam

# Re-pin every dependency after changing pyproject.toml.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q -e '.[test]'
	.lock-venv/bin/pip freeze --exclude-editable | grep -v '^mailcloak' > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
