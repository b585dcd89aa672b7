# `make demo` and `make test` each create .venv from nothing when it is missing.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.zoo-installed
# The torch builds that lie on this machine's disk (a CUDA build that also runs on the CPU; brings Triton).
TORCH   := torch==2.14.1 torchvision==0.29.1

.PHONY: install lint demo test bench gpu-check clean

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	# zoo with every extra (3d, video, text, graph, ctr, figures) and the test tools (pytest, ruff, ...)
	$(BIN)/pip install -q -e ".[all,test]"
	# nuScenes' own scorer (detection AP / TP errors / NDS), which the 3D metric tests run. Not a requirement of zoo:
	# every release's metadata conflicts (1.2.0 pins numpy<2) while 1.2.0's code runs on numpy 2; zoo[3d] brings what
	# the scorer imports. zoo.extras.NOT_IN_EXTRAS names this same command in the error for a missing devkit.
	$(BIN)/pip install -q --no-deps "nuscenes-devkit==1.2.0"
	touch $(STAMP)

install: $(STAMP)

# One intra-op thread unless the caller sets more: the demo's tensors are small, and on a shared 2-core machine
# torch's default threads oversubscribe the cores (measured: 64 s with 1 thread vs 491 s with the default).
# Outputs go to DEMO_DIR (the config's trainer.default_root_dir; logs, checkpoints/): `make demo DEMO_DIR=/tmp/emo`.
DEMO_DIR ?= runs/demo/emo
demo: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/zoo fit --config configs/demo/emo.yaml --trainer.default_root_dir "$(DEMO_DIR)"
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/zoo test --config configs/demo/emo.yaml --trainer.default_root_dir "$(DEMO_DIR)" \
		--ckpt_path "$(DEMO_DIR)/checkpoints/last.ckpt"

# The style gate (ruff's settings: [tool.ruff] in pyproject.toml); `make test` runs it first.
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q --durations=15

bench: $(STAMP)
	$(BIN)/zoo bench emo-1m timm:mobilenetv2_100 --batch-size 32 --device cpu
	$(BIN)/zoo bench emo-1m timm:mobilenetv2_100 --train --device cpu --warmup 2 --steps 5

# On a CUDA machine: GPU-only tests, kernel benchmarks, one bf16 training step per entry, one table (< 8 min on an
# H100); without CUDA it prints what it would run (scripts/gpu_check.sh --dry-run).
gpu-check: $(STAMP)
	PYTHON=$(BIN)/python scripts/gpu_check.sh

clean:
	rm -rf $(VENV) runs lightning_logs .pytest_cache
