"""``zoo bench --op emo-train|create``: whole-model rows of the speed table, timed against the model a user would
pick instead, so that ``zoo bench --op peers`` prints the table in one command.

- ``emo-train``: EMO-1M's training step (its LightningModule, the demo data, a Lightning ``Trainer``:
  :func:`zoo.bench.training.bench_training`) against timm's MobileNetV2-1.0 trained the same way on the same
  batches, at batch :data:`EMO_TRAIN_BATCH`. Two Trainers cannot be interleaved step by step, so the two runs
  alternate (zoo, peer, then peer, zoo, ...) and the row reports the median over rounds of each run's median step.
- ``create``: ``zoo.create("emo-1m")`` in a fresh Python process against ``timm.create_model("mobilenetv2_100")``,
  alternated, wall time of the whole process (interpreter start included for both). ``zoo.create`` returns a
  LightningModule, so it imports Lightning; the note gives a fresh process's ``import lightning.pytorch`` time less
  its ``import torch`` time: the part of the gap that is Lightning's (the limit of this row while zoo hands out
  LightningModules).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import torch

from zoo.profiling import peer_row as _row

EMO_TRAIN_BATCH = 32

EMO_TRAIN_STEPS = 5  # timed steps per run (after 2 untimed ones)

CREATE_SCRIPTS = {
    "zoo": "import zoo; zoo.create('emo-1m')",
    "timm": "import timm; timm.create_model('mobilenetv2_100')",
    "torch": "import torch",
    "lightning": "import lightning.pytorch",
}


def emo_train_rows(rounds: int, device: torch.device, batch: int = EMO_TRAIN_BATCH, steps: int = EMO_TRAIN_STEPS):
    """One row: EMO-1M vs timm MobileNetV2-1.0 training steps (median over ``rounds`` alternated runs)."""
    from zoo import registry
    from zoo.bench.inputs import demo_config
    from zoo.bench.training import bench_training

    image_data = demo_config(registry.get("emo-1m"))
    image_data = (str(image_data[0]), image_data[1])
    names = {"zoo": "emo-1m", "peer": "timm:mobilenetv2_100"}
    med: dict[str, list[float]] = {"zoo": [], "peer": []}
    last = {}
    for r in range(max(1, rounds)):
        for key in ("zoo", "peer") if r % 2 == 0 else ("peer", "zoo"):
            row = bench_training(
                names[key],
                batch_size=batch,
                device=str(device),
                steps=steps,
                warmup=2,
                image_data=image_data,
                strict=False,
            )
            med[key].append(row["step_ms_median"] / 1e3)
            last[key] = row
    note = (
        f"batch {last['zoo']['batch']}, {steps} steps per run after 2 untimed, {len(med['zoo'])} alternated runs each; "
        f"params {last['zoo']['params'] / 1e6:.2f}M vs {last['peer']['params'] / 1e6:.2f}M"
    )
    return [
        _row(
            "emo-train",
            f"EMO-1M training step, batch {last['zoo']['batch']}",
            statistics.median(med["zoo"]),
            "timm mobilenetv2_100 training step",
            statistics.median(med["peer"]),
            note,
        )
    ]


def _process_seconds(code: str) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, timeout=600)
    return time.perf_counter() - t0


def create_rows(rounds: int) -> list[dict]:
    """One row: a fresh process building EMO-1M with ``zoo.create`` vs timm's MobileNetV2 (alternated)."""
    times: dict[str, list[float]] = {k: [] for k in CREATE_SCRIPTS}
    for r in range(max(1, rounds)):
        keys = list(CREATE_SCRIPTS) if r % 2 == 0 else list(reversed(CREATE_SCRIPTS))
        for k in keys:
            times[k].append(_process_seconds(CREATE_SCRIPTS[k]))
    med = {k: statistics.median(v) for k, v in times.items()}
    note = (
        f"fresh process each, {len(times['zoo'])} alternated rounds; Lightning's import is "
        f"{med['lightning'] - med['torch']:.2f} s of it (a process importing lightning.pytorch "
        f"{med['lightning']:.2f} s vs torch alone {med['torch']:.2f} s): zoo.create returns a LightningModule"
    )
    return [_row("create", "zoo.create('emo-1m'), cold process", med["zoo"], "timm.create_model", med["timm"], note)]
