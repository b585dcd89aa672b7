"""``zoo bench``: throughput, step time and peak memory of models side by side in one run; data preprocessing.

Four modes:

- **Inference** (default): ``forward`` under ``torch.inference_mode`` on random inputs of the entry's
  ``preprocess["input_size"]`` (image models) or the module's ``example_input_array``; ``--batch-size`` (default 32),
  timed after a warm-up that lasts until the step time is stable (the note gives the number of warm-up steps).
- **Ops** (``--op``): zoo's fused kernels against their references (``zoo.ops.bench``), and zoo's 3D / detection
  pieces (voxelize, iou, nms, or ``peers`` for all) against their peers as ratios (``zoo.profiling``).
- **Training** (``--train``): the LightningModule's real ``training_step`` run by a Lightning ``Trainer`` - loss,
  backward, the optimizers and schedules of the module's own ``configure_optimizers`` (automatic or manual
  optimisation, gradient clipping as the demo config sets it) - on batches drawn from a data module. The module is
  the registry entry's (``zoo.create(name)``: the paper-size architecture, random weights); the data module is the
  ``data:`` section of the entry's demo config, ``configs/demo/*.yaml`` whose model class is the entry's (else
  ``configs/demo/<method>.yaml``), or of ``--config FILE``. A ``_StepTimer`` callback times each batch from
  ``on_train_batch_start`` to ``on_train_batch_end`` (CUDA synchronised at both ends), so data loading is outside
  the window; the first ``warmup`` batches are not counted. One "step" is one batch: for the full-graph methods
  (CCGC, RELIANT) that is one epoch of the paper.
- **Data** (``--data``): the demo data module's ``prepare_data()`` + ``setup("fit")`` (reading, tokenising,
  filtering, binning) in a fresh process, with a fresh ``cache_dir`` where the module takes one.

The demo data does not always fit the entry's full-size model; the bench then adapts, and the row's ``note`` says
what it changed (nothing is changed silently):

- what the model fixes (its ``data_config()``: image size, frames, tokenizer, text length, point-cloud range): the
  data module follows the model, as in ``zoo fit`` (``zoo.sizes``), so EMO-1M and TinyMIM train at 224 px on the
  demo's upscaled digits, as in the paper, and A-CLIP's captions pad to its 77 tokens;
- data-bound sizes (:data:`DATA_ARGS`: input features, clusters, nodes, fields, vocabularies): these fit a model to
  its dataset rather than choose its architecture, so they come from the demo config's model when they differ
  (``ccgc-bat`` becomes CCGC with dims 500 on the karate club's 34 features and 2 clusters);
- inputs of the training step that are not data (a teacher) come from the module's ``bench_init_args`` classmethod
  when it has one: RELIANT trains its teacher on the demo graph in ``setup`` (outside the timing), TinyMIM uses the
  paper's MAE ViT at random weights.

``timm:<name>`` models are benchmarked as they are (inference) or wrapped in a minimal classifier (training:
cross-entropy, SGD lr 0.1 momentum 0.9, timm's default 1,000-class head) fed the image data of the first image entry
of the same run (else ``configs/demo/emo.yaml``'s data) at the timm model's input size.

Samples per step: images / rows for batched data (leading dimension of the first tensor), nodes for a graph, one
document for coreference. Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` (absolute: weights, optimizer
state, activations) over the timed steps; on the CPU the growth of the process's peak resident set (VmHWM) over
the timed steps, with the peak mark reset at their start (``/proc/self/clear_refs``; where the kernel refuses, the
growth of ``ru_maxrss``, which only grows, so an earlier larger model hides a later one).

The modes live in :mod:`zoo.bench.inference`, :mod:`zoo.bench.training`, :mod:`zoo.bench.data` and
:mod:`zoo.bench.peers` (the timers and the memory probe in :mod:`zoo.profiling`); this module runs them side by side
and prints the table.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from zoo.bench.data import bench_data
from zoo.bench.inference import bench_inference
from zoo.bench.inputs import _read_yaml, demo_config
from zoo.bench.training import DATA_ARGS, bench_training
from zoo.profiling import PeakMemory, count_macs, synchronize, time_calls

__all__ = [
    "bench_models",
    "bench_inference",
    "bench_training",
    "bench_data",
    "demo_config",
    "print_rows",
    "write_json",
    "DATA_ARGS",
    "PeakMemory",
    "count_macs",
    "synchronize",
    "time_calls",
]


def _fmt(v: float, digits: int = 1) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:,.{digits}f}"


def print_rows(rows: list[dict]) -> None:
    """The table: one line per row, ratios of samples/s against the first row (same unit only), then the notes."""
    if not rows:
        return
    if rows[0]["mode"] == "data":
        print(f"{'data':28s} {'seconds':>9s} {'peak MB':>9s}  data module")
        for r in rows:
            print(f"{r['name']:28s} {_fmt(r['seconds'], 2):>9s} {_fmt(r['peak_mem_mb']):>9s}  {r['data']}")
    else:
        first = rows[0]
        mem = "peak MB" if first["device"].startswith("cuda") else "+RSS MB"
        print(
            f"{'model':28s} {'mode':5s} {'dev':6s} {'thr':>3s} {'batch':>6s} {'unit':7s} {'samples/s':>10s} "
            f"{'step ms':>9s} {'min':>9s} {'max':>9s} {mem:>8s} {'params':>12s} {'vs first':>8s}"
        )
        for r in rows:
            ratio = f"{r['samples_per_s'] / first['samples_per_s']:.2f}x" if r["unit"] == first["unit"] else "-"
            print(
                f"{r['name']:28s} {r['mode']:5s} {r['device']:6s} {r['threads']:3d} {r['batch']:6d} {r['unit']:7s} "
                f"{r['samples_per_s']:10.1f} {r['step_ms_median']:9.1f} {r['step_ms_min']:9.1f} "
                f"{r['step_ms_max']:9.1f} {_fmt(r['peak_mem_mb']):>8s} {r['params']:12,d} {ratio:>8s}"
            )
    for r in rows:
        if r.get("note") or r["mode"] == "train":
            print(
                f"  {r['name']}: "
                + "; ".join(x for x in (r.get("data") if r["mode"] == "train" else None, r.get("note")) if x)
            )


def write_json(rows: list[dict], path: str | os.PathLike) -> Path:
    """Write ``rows`` as a JSON list, atomically."""
    from zoo.files import atomic_write_text

    return atomic_write_text(path, json.dumps(rows, indent=1) + "\n")


def _is_image_entry(name: str) -> bool:
    from zoo import registry

    return not name.startswith("timm:") and bool(registry.get(name).preprocess.get("input_size"))


def bench_models(
    names: list[str],
    train: bool = False,
    data: bool = False,
    batch_size: int | None = None,
    device: str | None = None,
    steps: int | None = None,
    warmup: int | None = None,
    threads: int | None = None,
    json_path: str | None = None,
    config: str | None = None,
    model_args: dict | None = None,
    data_args: dict | None = None,
    verbose: bool = True,
    **kw,
) -> list[dict]:
    """Benchmark ``names`` side by side (inference, ``train=True`` training steps or ``data=True`` preprocessing),
    print the table and write ``json_path``; returns the rows. ``kw``: compile, channels_last, precision."""
    if not names:
        raise ValueError("zoo bench: give model names (registry names or timm:<name>) or --op NAME")
    if train and data:
        raise ValueError("zoo bench: --train and --data are two different measurements; choose one")
    if threads is not None:
        if threads < 1:
            raise ValueError(f"zoo bench: --threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    steps = 10 if steps is None else steps
    warmup = 3 if warmup is None else warmup
    rows = []
    if data:
        for n in names:
            if n.startswith("timm:"):
                raise ValueError(f"zoo bench --data: {n} has no data module; give registry names")
            rows.append(bench_data(n, config, data_args))
    elif train:
        image_data = None
        first_image = next((n for n in names if _is_image_entry(n)), None)
        if first_image is not None:
            from zoo import registry

            image_data = (config, _read_yaml(Path(config))) if config else demo_config(registry.get(first_image))
            image_data = (str(image_data[0]), image_data[1])
        for n in names:
            rows.append(
                bench_training(
                    n,
                    batch_size=batch_size,
                    device=device,
                    steps=steps,
                    warmup=warmup,
                    config=config,
                    model_args=model_args,
                    data_args=data_args,
                    image_data=image_data,
                    strict=len(names) == 1,
                    **kw,
                )
            )
    else:
        if model_args or data_args or config:
            raise ValueError("zoo bench: --model-arg / --data-arg / --config apply to --train and --data only")
        kw.pop("precision", None)
        for n in names:
            rows.append(bench_inference(n, batch_size=batch_size, device=device, steps=steps, warmup=warmup, **kw))
    if verbose:
        print_rows(rows)
    if json_path:
        write_json(rows, json_path)
        if verbose:
            print(f"wrote {json_path}")
    return rows
