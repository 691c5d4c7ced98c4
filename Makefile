VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run quickstart browser test bench clean

# Idempotent: re-installs only when the dependency files change.
setup: $(STAMP)
	@echo "tunelab is installed in $(VENV)/bin: run 'source $(VENV)/bin/activate' in each new shell (or call $(VENV)/bin/tunelab)"

$(STAMP): pyproject.toml requirements-presets.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-deps -r requirements-presets.txt
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

TL := $(VENV)/bin/tunelab
HOTEL := data/hotel

# The main job: hotel DB -> synthetic dialogs -> LoRA fine-tune (18 min CPU budget) -> evaluation table. It
# replaces runs/hotel_lora by asking to (--train.overwrite=true): recipes never replace a run on their own.
# With real CrossWOZ dialogs, `make run CROSSWOZ=path/to/train.json.zip [CROSSWOZ_DB=path/to/hotel_db.json]`
# (the DB defaults to hotel_db.json beside the dialogs) imports their hotel part, splits it 8:1:1 by dialog
# into $(REAL) and trains on synthetic + real train rows (data.train_file as a list).
REAL := data/hotel/crosswoz
CROSSWOZ_DB ?= $(dir $(CROSSWOZ))hotel_db.json
run: setup
	$(TL) hotel build-db --out $(HOTEL)/hotels.db --seed 0
	$(TL) hotel synth --db $(HOTEL)/hotels.db --n 3000 --seed 0 --out $(HOTEL)
ifdef CROSSWOZ
	$(TL) hotel build-db --from-crosswoz $(CROSSWOZ_DB) --out $(REAL)/hotels.db
	$(TL) hotel import-crosswoz $(CROSSWOZ) --db $(REAL)/hotels.db --splits $(REAL)
	$(TL) train recipes/hotel_lora.yaml --train.overwrite=true '--data.train_file=[$(HOTEL)/train.jsonl, $(REAL)/train.jsonl]' \
		'--data.dev_file=[$(HOTEL)/dev.jsonl, $(REAL)/dev.jsonl]'
	$(TL) evaluate runs/hotel_lora --data $(REAL)/test.jsonl --out runs/hotel_lora/eval-crosswoz-test \
		--max-new-tokens 128 --db $(REAL)/hotels.db
else
	$(TL) train recipes/hotel_lora.yaml --train.overwrite=true
endif
	$(TL) evaluate runs/hotel_lora --data $(HOTEL)/test.jsonl --limit 200 --max-new-tokens 128 --db $(HOTEL)/hotels.db
	@echo "loss curve: runs/hotel_lora/loss.png   chat: $(TL) chat runs/hotel_lora"

quickstart: setup
	$(TL) train recipes/quickstart.yaml --train.overwrite=true

# The web demo's end-to-end test drives Debian's Chromium; a CJK font makes its screenshot legible.
# Where apt is not usable (not root), the test skips and says why.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium fonts-wqy-zenhei >/dev/null) || true

test: setup browser
	$(PY) -m pytest -q -rs tests

# Benchmarks write benchmarks/results/; train_throughput takes ~50 min (the per-turn recipe is most of it)
# and installs LLaMA-Factory into benchmarks/out/lf/lf-venv; eval_speed needs the run of `make run`.
bench: setup
	$(PY) benchmarks/target_only_loss.py
	$(PY) benchmarks/train_throughput/run.py --n 12 --dev 12
	$(PY) benchmarks/eval_speed.py runs/hotel_lora data/hotel/test.jsonl --items 200 --batch 8

clean:
	rm -rf runs .pytest_cache
