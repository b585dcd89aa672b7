"""Same command, same seed, same number: every demo config, run twice for a few steps in two fresh processes (with
different hash seeds, so set/dict order of strings cannot hide), logs bit-identical losses and metrics.

Each demo runs 2 epochs of 3 training batches with a validation pass after each epoch; demos that read another demo's
checkpoint (TinyMIM and SimVTP fine-tuning) run after it under the same root, and so do the RSFD demo's first two
steps (the frame-classification CNN, then the feature extraction under zoo predict) before its captioner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "tests" / "determinism_runner.py"
SHORT = [
    "--trainer.max_epochs=2",
    "--trainer.max_steps=-1",
    "--trainer.limit_train_batches=3",
    "--trainer.limit_val_batches=1",
    "--trainer.check_val_every_n_epoch=1",
    "--trainer.val_check_interval=1.0",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.enable_progress_bar=false",
    "--trainer.log_every_n_steps=1",
]
# a demo -> the demos that must run before it under the same root
CHAINS = {
    "tinymim": ["tinymim-teacher"],
    "tinymim-feature": ["tinymim-teacher"],
    "tinymim-finetune": ["tinymim-teacher", "tinymim"],
    "simvtp-finetune": ["simvtp"],
    "rsfd": ["rsfd-cnn", "rsfd-features"],
    "rsfd-longtail": ["rsfd-cnn", "rsfd-longtail-features"],
}
# chain steps run under zoo predict (they write files the next step reads, and log nothing)
PREDICT = {"rsfd-features", "rsfd-longtail-features"}
# demos whose module sets its own epoch count: a shorter one (same code path)
EXTRA = {
    "ccgc": ["--model.init_args.epochs=6", "--model.init_args.warmup_epochs=2", "--model.init_args.eval_every=3"],
    "ccgc-bat": ["--model.init_args.epochs=6", "--model.init_args.warmup_epochs=2", "--model.init_args.eval_every=3"],
    "reliant": ["--model.init_args.teacher_epochs=5"],
    "reliant-bail": ["--model.init_args.teacher_epochs=5"],
    "reliant-credit": ["--model.init_args.teacher_epochs=5"],
}
FIT_DEMOS = sorted(p.stem for p in (REPO / "configs" / "demo").glob("*.yaml") if p.stem not in PREDICT)


def _run_chain(demo: str, root: Path, hash_seed: int) -> list[dict]:
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed), "OMP_NUM_THREADS": "1"}
    out = []
    for step in [*CHAINS.get(demo, []), demo]:
        result = root / f"{step}.json"
        proc = subprocess.run(
            [
                sys.executable,
                str(RUNNER),
                str(result),
                "--",
                "predict" if step in PREDICT else "fit",
                "--config",
                f"configs/demo/{step}.yaml",
                f"--trainer.default_root_dir={root}",
                *SHORT,
                *EXTRA.get(step, []),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, f"{step} (hash seed {hash_seed}) failed:\n{proc.stderr[-3000:]}"
        if step not in PREDICT:
            out.append(json.loads(result.read_text()))
    return out


@pytest.mark.parametrize("demo", FIT_DEMOS)
def test_demo_gives_the_same_numbers_twice(demo, tmp_path):
    with ThreadPoolExecutor(2) as pool:  # the two runs side by side: one per core
        a, b = pool.map(lambda k: _run_chain(demo, tmp_path / f"run{k}", k), (1, 2))
    for run_a, run_b in zip(a, b):
        losses = [e for e in run_a["events"] if e[0] == "train" and e[2] is not None]
        assert losses, f"{demo}: no training loss was recorded"
        assert any(e[0] == "val" for e in run_a["events"]) or run_a["final"], f"{demo}: nothing was measured"
        assert run_a["events"] == run_b["events"], f"{demo}: the two runs logged different values"
        assert run_a["final"] == run_b["final"], f"{demo}: the final metrics differ"
