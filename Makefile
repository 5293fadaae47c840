# neurofm: two commands on a fresh machine -- `make demo` and `make test`.
# Every target creates its virtual environment when missing; a stamp file records the
# installed state so a second run installs nothing unless pyproject.toml changed.

PYTHON ?= python3
VENV := .venv
BENCH_VENV := .venv-bench
TORCH := torch==2.13.0
DEMO_DIR ?= demo-output

.PHONY: demo test bench lint clean fuzz docs

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(VENV)/bin/pip install --quiet $(TORCH)
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $@

# The docs extra (mkdocs, mkdocstrings, mkdocs-material, mkdocs-jupyter) on top of the dev venv.
$(VENV)/.docs-installed: $(VENV)/.installed
	$(VENV)/bin/pip install --quiet -e ".[docs]"
	touch $@

$(BENCH_VENV)/.installed: pyproject.toml benchmarks/requirements.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet $(TORCH)
	$(BENCH_VENV)/bin/pip install --quiet -e . -r benchmarks/requirements.txt
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/python -m neurofm.demo --out $(DEMO_DIR)

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest

# The documentation site (mkdocs.yml, docs/) into site/; --strict: any warning fails the build.
# NO_MKDOCS_2_WARNING silences mkdocs-material's end-of-life banner (not a build warning).
docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site
	@echo "docs: site/index.html"

# Mutation fuzzing of the readers and spec loaders (tests/faults/fuzzing.py) with random seeds,
# for FUZZ_SECONDS (default 600); prints how many inputs were tried and every finding.
# `make test` runs a fixed-seed minute of it.
FUZZ_SECONDS ?= 600
fuzz: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(VENV)/bin/python tests/faults/fuzzing.py --seconds $(FUZZ_SECONDS)

# Every benchmark, POYO again at torch_brain's 11.8M config (batch 8: torch_brain needs ~16 GB
# at 32), then the GPU check (which says why and exits 0 where there is no GPU).
bench: $(BENCH_VENV)/.installed
	@set -e; for script in benchmarks/*_bench.py; do \
		echo "== $$script"; $(BENCH_VENV)/bin/python $$script; \
	done; \
	echo "== benchmarks/poyo_bench.py --size 11.8m --batch 8"; \
	$(BENCH_VENV)/bin/python benchmarks/poyo_bench.py --size 11.8m --batch 8; \
	echo "== benchmarks/gpu_check.py"; $(BENCH_VENV)/bin/python benchmarks/gpu_check.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check neurofm tests benchmarks notebooks
	$(VENV)/bin/ruff format --check neurofm tests benchmarks notebooks

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(DEMO_DIR) .pytest_cache site
