# The two set-up commands are `make run` and `make test`; everything else is optional.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# Two test files run at once (pytest-xdist, one file per worker so a module's node stays in one
# process): most of an integration test is waiting on a node. TEST_WORKERS=0 runs them in turn.
TEST_WORKERS ?= 2

.PHONY: run test bench soak lint services clean pdf-tools chain browser

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

services:
	bash .ci/services.sh

# The local Ethereum chain: anvil and solcjs at the versions chain/package-lock.json pins, and
# the test USDT compiled from its committed source by solcjs (JavaScript: nothing downloaded).
CHAIN_MODULES := chain/node_modules/.package-lock.json
USDT_ARTIFACT := chain/build/TestUSDT.json
$(CHAIN_MODULES): chain/package.json chain/package-lock.json
	cd chain && npm ci --no-audit --no-fund --loglevel=error
	touch $(CHAIN_MODULES)
$(USDT_ARTIFACT): $(CHAIN_MODULES) chain/TestUSDT.sol chain/compile.js
	cd chain && node compile.js
chain: $(USDT_ARTIFACT)

# The development profile (config/dev.toml) allows the secrets published in config/default.toml.
run: $(STAMP) services chain
	JUHE_CONFIG=config/dev.toml $(VENV)/bin/juhe up

# PDFs embed a Traditional Chinese font (fonts-arphic-bsmi00lp, config settlement.pdf_font);
# their tests read them back with pdftotext (poppler-utils). Debian's packages, where missing.
PDF_FONT := /usr/share/fonts/truetype/arphic-bsmi00lp/bsmi00lp.ttf
pdf-tools:
	@{ [ -f $(PDF_FONT) ] && command -v pdftotext >/dev/null; } || \
	  apt-get install -y -qq fonts-arphic-bsmi00lp poppler-utils >/dev/null 2>&1 || \
	  (apt-get update -qq >/dev/null 2>&1 && \
	   apt-get install -y -qq fonts-arphic-bsmi00lp poppler-utils >/dev/null 2>&1) || \
	  echo "make: fonts-arphic-bsmi00lp or poppler-utils could not be installed; PDF tests skip"

# Browser tests drive Debian's chromium with playwright-core (portal/package-lock.json); no
# browser is ever downloaded.
PORTAL_MODULES := portal/node_modules/.package-lock.json
$(PORTAL_MODULES): portal/package.json portal/package-lock.json
	cd portal && npm ci --no-audit --no-fund --loglevel=error
	touch $(PORTAL_MODULES)
browser: $(PORTAL_MODULES)
	@command -v chromium >/dev/null || apt-get install -y -qq chromium >/dev/null 2>&1 || \
	  (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1) || \
	  echo "make: chromium could not be installed; the browser tests fail"

# pytest exits 5 when it collected nothing: that is a failure here, never a pass.
test: $(STAMP) services pdf-tools chain browser
	@$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected"; exit 1; fi; exit $$rc

# wrk is the load generator when installed (Debian's package); otherwise an asyncio one is used.
bench: $(STAMP) services
	@command -v wrk >/dev/null || (apt-get install -y -qq wrk >/dev/null 2>&1 || \
	  (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq wrk >/dev/null 2>&1)) || \
	  echo "make bench: wrk could not be installed; using the asyncio generator"
	$(PY) -m benchmarks.run

# Ten minutes of a whole node at about half its sustained end-to-end rate; memory per process.
soak: $(STAMP) services
	$(PY) -m benchmarks.run --soak 600 --soak-rate $${SOAK_RATE:-90}

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis chain/node_modules chain/build portal/node_modules
