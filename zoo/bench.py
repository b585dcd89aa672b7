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

- image size: the data module's ``image_size`` becomes the model's (``img_size`` init arg, else the entry's
  ``preprocess["input_size"]``), so EMO-1M and TinyMIM train at 224 px on the demo's upscaled digits, as in the paper;
- data-bound sizes (:data:`DATA_ARGS`: input features, clusters, nodes, fields, vocabularies): these fit a model to
  its dataset rather than choose its architecture, so they come from the demo config's model when they differ
  (``ccgc-bat`` becomes CCGC with dims 500 on the karate club's 34 features and 2 clusters);
- the tokenizer and text length: a data module with an ``encoder`` tokenises with the model's encoder, one with a
  ``context_length`` pads/truncates to the model's (A-CLIP's 77);
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
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

# Init args that fit a model to its dataset (not its architecture): taken from the demo config's model when the
# entry's value differs, so that the entry's architecture can train on the demo's data.
DATA_ARGS = ("in_features", "num_clusters", "num_nodes", "num_fields", "vocab_sizes")


# ============================================================================ one timer, one peak-memory helper
def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA); a no-op on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], steps: int, warmup: int = 1, device: torch.device | str = "cpu") -> list[float]:
    """Seconds of each of ``steps`` calls of ``fn`` after ``warmup`` untimed calls (CUDA synchronised)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def _proc_status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _release_freed_memory() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``), so that memory an earlier model freed but the
    allocator kept resident is not reused unseen by the next measurement (which would then show no growth)."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak memory between :meth:`start` and :meth:`stop` (or a ``with`` block).

    CUDA: ``peak_mb`` = ``torch.cuda.max_memory_allocated`` since the start (absolute), ``growth_mb`` = that minus
    what was allocated at the start. CPU: the kernel's peak-RSS mark (VmHWM) is reset to the current RSS at the start
    (``/proc/self/clear_refs``, after returning freed heap pages to the OS), ``peak_mb`` = VmHWM at the stop,
    ``growth_mb`` = that minus the RSS at the start;
    where the reset is refused (not Linux, no permission) ``ru_maxrss`` is used and ``exact`` is False.
    """

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.peak_mb = self.growth_mb = float("nan")
        self.exact = True

    def start(self) -> PeakMemory:
        synchronize(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device) / 2**20
            return self
        _release_freed_memory()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to VmRSS (Linux >= 4.0)
            self._base = _proc_status_mb("VmRSS")
            self.exact = self._base is not None
        except OSError:
            self.exact = False
        if not self.exact:
            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        return self

    def stop(self) -> PeakMemory:
        synchronize(self.device)
        if self.device.type == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.exact:
            self.peak_mb = _proc_status_mb("VmHWM")
        else:
            self.peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        self.growth_mb = self.peak_mb - self._base
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _device(device: str | None) -> torch.device:
    if device:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {device}: no CUDA device is available here; use --device cpu")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _timing(times: list[float], samples: list[int]) -> dict:
    return {
        "samples_per_s": sum(samples) / sum(times),
        "step_ms_median": statistics.median(times) * 1e3,
        "step_ms_min": min(times) * 1e3,
        "step_ms_max": max(times) * 1e3,
    }


def _env(dev: torch.device) -> dict:
    import zoo

    return {"device": str(dev), "threads": torch.get_num_threads(), "torch": torch.__version__, "zoo": zoo.__version__}


def count_macs(model: torch.nn.Module, *inputs, norms: bool = True) -> float:
    """Multiply-adds of one forward pass, counted with ``torch.utils.flop_counter`` (works on the meta device).

    torch counts convolutions, matrix products and attention (FLOPs = 2 x MACs; its CPU attention kernel is added
    here). ``norms=True`` adds what fvcore's
    counter (the one most papers report, EMO's included) also charges: BatchNorm 2 per element in eval (1 per
    element without affine), LayerNorm 5 per element (4 without affine) and adaptive average pooling 1 per input
    element, so that figures compare with the papers' tables.
    """
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    aten = torch.ops.aten
    extra: dict = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):  # the CPU kernel torch does not count

        def sdpa_cpu(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs):
            return sdpa_flop_count(q_shape, k_shape, v_shape)

        extra[aten._scaled_dot_product_flash_attention_for_cpu] = sdpa_cpu
    if norms:

        def bn(x_shape, weight=None, *args, out_shape=None, **kwargs):  # flop formulas return FLOPs = 2 x MACs
            return 2 * math.prod(x_shape) * (2 if weight is not None else 1)

        def ln(x_shape, normalized_shape, weight=None, *args, out_shape=None, **kwargs):
            return 2 * math.prod(x_shape) * (5 if weight is not None else 4)

        def pool(x_shape, *args, out_shape=None, **kwargs):
            return 2 * math.prod(x_shape)

        for op in (
            "_native_batch_norm_legit_no_training",
            "_native_batch_norm_legit",
            "native_batch_norm",
            "cudnn_batch_norm",
        ):
            if hasattr(aten, op):
                extra[getattr(aten, op)] = bn
        extra[aten.native_layer_norm] = ln
        extra[aten._adaptive_avg_pool2d] = pool
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False, custom_mapping=extra) as counter, torch.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2


# ================================================================================================ inference
def _timm_net(name: str, **kw):
    import timm

    try:
        return timm.create_model(name, pretrained=False, **kw)
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise ValueError(
                f"unknown timm model {name!r}: timm.list_models('*{name[:6]}*') lists the names (zoo bench timm:<name>)"
            ) from None
        raise


def _build(name: str, batch_size: int):
    """-> (nn.Module to run, tuple of inputs) for inference."""
    if name.startswith("timm:"):
        net = _timm_net(name[5:])
        size = net.pretrained_cfg.get("input_size", (3, 224, 224))
        return net, (torch.randn(batch_size, *size),)
    import zoo
    from zoo import registry

    entry = registry.get(name)
    module = zoo.create(entry.name)
    size = entry.preprocess.get("input_size")
    if size:
        return module, (torch.randn(batch_size, *size),)
    ex = module.example_input_array
    ex = ex if isinstance(ex, tuple) else (ex,)
    return module, ex


def _params(net: torch.nn.Module) -> int:
    net = getattr(net, "model", net)  # a zoo LightningModule: its network (the registry's `params`)
    return sum(p.numel() for p in net.parameters())


def bench_inference(
    name: str,
    batch_size: int | None = None,
    compile: bool = False,
    channels_last: bool = False,
    device: str | None = None,
    steps: int = 10,
    warmup: int = 3,
) -> dict:
    """One row: ``forward`` of ``name`` under ``torch.inference_mode`` on random inputs (see the module docstring).

    Warm-up (:func:`zoo.profiling.warm_up`): at least ``warmup`` untimed steps, then more until the last three step
    times lie within 5 % of their median (at most 50): a fresh process runs the same network up to about 2x slower
    at first (allocator page faults). The row's ``warmup`` is the number of warm-up steps run, its note says so."""
    dev = _device(device)
    net, inputs = _build(name, batch_size or 32)
    net = net.to(dev).eval()
    inputs = tuple(x.to(dev) if torch.is_tensor(x) else x for x in inputs)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        inputs = tuple(
            x.contiguous(memory_format=torch.channels_last) if torch.is_tensor(x) and x.dim() == 4 else x
            for x in inputs
        )
    fn = torch.compile(net) if compile else net

    def step():
        with torch.inference_mode():
            fn(*inputs)

    from zoo.profiling import warm_up

    warm, stable = warm_up(step, min_steps=warmup, max_steps=max(50, warmup), sync=lambda: synchronize(dev))
    with PeakMemory(dev) as mem:
        times = time_calls(step, steps, warmup=0, device=dev)
    first = inputs[0]  # a forward argument that is a list of tensors holds one per sample (LiDAR clouds)
    n = len(first) if isinstance(first, list) and first and all(torch.is_tensor(t) for t in first) else _count(first)[0]
    return {
        "name": name,
        "mode": "infer",
        **_env(dev),
        "batch": n,
        "unit": "samples",
        **_timing(times, [n] * len(times)),
        "peak_mem_mb": mem.peak_mb if dev.type == "cuda" else mem.growth_mb,
        "params": _params(net),
        "steps": steps,
        "warmup": warm,
        "loss": None,
        "data": "random inputs",
        "note": f"warm-up: {warm} steps until the step time was stable (last 3 within 5%)"
        if stable
        else f"warm-up: step time not stable after {warm} steps (the figures may be inflated)",
    }


# ================================================================================================ training
def _config_roots() -> list[Path]:
    roots = [Path.cwd() / "configs", Path(__file__).resolve().parents[1] / "configs"]
    return [r for i, r in enumerate(roots) if r.is_dir() and r.resolve() not in {x.resolve() for x in roots[:i]}]


def _read_yaml(path: Path) -> dict:
    import yaml
    from omegaconf import OmegaConf

    text = Path(path).read_text()
    cfg = yaml.safe_load(text) or {}
    if not isinstance(cfg, dict):
        raise ValueError(f"{path} is not a LightningCLI config (a YAML mapping with model: and data:)")
    # ${trainer.default_root_dir}/... as `zoo fit` resolves it (jsonargparse's omegaconf mode)
    return OmegaConf.to_container(OmegaConf.create(cfg), resolve=True) if "${" in text else cfg


def demo_config(entry) -> tuple[Path, dict]:
    """The demo config of a registry entry: the ``configs/demo/*.yaml`` whose model class is the entry's, else
    ``configs/demo/<method>.yaml``; read from the current directory's ``configs/`` or the checkout's."""
    roots = _config_roots()
    for root in roots:
        # the method's own demo first (demo/aclip.yaml before its variant demo/aclip-random-mask.yaml)
        files = sorted((root / "demo").glob("*.yaml"), key=lambda p: (p.stem != entry.method, p.name))
        for path in files:
            cfg = _read_yaml(path)
            if (cfg.get("model") or {}).get("class_path") == entry.module and cfg.get("data"):
                return path, cfg
        path = root / "demo" / f"{entry.method}.yaml"
        if path.is_file():
            return path, _read_yaml(path)
    raise FileNotFoundError(
        f"zoo bench --train: no demo config for {entry.name} (configs/demo/{entry.method}.yaml, looked in "
        f"{', '.join(map(str, roots)) or 'no configs/ folder'}): run it from the zoo repository's root, or pass "
        "--config FILE (a LightningCLI YAML whose data: section to train on)"
    )


def _accepts(cls, name: str) -> bool:
    params = inspect.signature(cls.__init__).parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _data_section(cfg: dict, path: Path | str) -> tuple[Any, dict]:
    from zoo.registry import import_class

    data = cfg.get("data")
    if not isinstance(data, dict) or "class_path" not in data:
        raise ValueError(f"{path} has no data: section with a class_path (zoo bench --train draws its batches from it)")
    return import_class(data["class_path"]), dict(data.get("init_args") or {})


def _entry_setup(
    name: str, cfg_path: str | None, model_args: dict, data_args: dict, batch_size: int | None, strict: bool = True
):
    """-> (module, data module, data label, notes, config) for a registry entry. A ``model_args`` key the module
    does not take is an error (``strict``) or skipped with a note (a run of several models)."""
    import zoo
    from zoo import registry

    entry = registry.get(name)
    if cfg_path:
        path, cfg = Path(cfg_path), _read_yaml(Path(cfg_path))
    else:
        path, cfg = demo_config(entry)
    data_cls, dargs = _data_section(cfg, path)
    demo_model = dict((cfg.get("model") or {}).get("init_args") or {})
    notes = []
    module_cls = registry.import_class(entry.module)
    foreign = [k for k in model_args if not _accepts(module_cls, k)]
    if foreign and strict:
        raise ValueError(f"--model-arg {', '.join(foreign)}: {module_cls.__name__} takes no such init arg")
    if foreign:
        notes.append(f"--model-arg {', '.join(foreign)} not applied (not an init arg of {module_cls.__name__})")
        model_args = {k: v for k, v in model_args.items() if k not in foreign}
    init = {**entry.init_args, **model_args}
    over = {}
    for k in DATA_ARGS:
        if k in demo_model and k not in model_args and _accepts(module_cls, k) and init.get(k) != demo_model[k]:
            over[k] = demo_model[k]
    if over:
        notes.append(", ".join(f"{k}={v}" for k, v in over.items()) + f" from {path.name}'s model (its data)")
    hook = getattr(module_cls, "bench_init_args", None)  # inputs of the step the module needs (a teacher)
    teacher, note = hook({**init, **over}, demo_model) if hook else ({}, "")
    if "teacher" not in model_args and teacher:
        over.update(teacher)
        notes.append(note)
    module = zoo.create(entry.name, **{**over, **model_args}).train()  # create() returns eval mode
    hp = module.hparams
    # what the model fixes and its data must follow: input size, tokenizer, text context
    size = hp.get("img_size") or (entry.preprocess.get("input_size") or [None])[-1]
    for key, value, what in (
        ("image_size", size, "images {} px"),
        ("encoder", hp.get("encoder"), "tokenised with {}"),
        ("context_length", hp.get("context_length"), "captions of {} tokens"),
    ):
        if value and _accepts(data_cls, key) and key not in data_args and dargs.get(key) != value:
            notes.append(f"{what.format(value)} (demo {dargs.get(key)})")
            dargs[key] = value
    dargs.update(data_args)
    if batch_size is not None:
        if _accepts(data_cls, "batch_size"):
            dargs["batch_size"] = batch_size
        else:
            notes.append(f"--batch-size does not apply ({data_cls.__name__} fixes the batch)")
    return module, data_cls(**dargs), f"{path} ({data_cls.__name__})", notes, cfg


def _timm_setup(name: str, image_cfg: tuple[str, dict] | None, data_args: dict, batch_size: int | None):
    """timm:<name> as a minimal image classifier + the run's image data at the timm model's input size."""
    import torch.nn.functional as F
    from lightning.pytorch import LightningModule

    net = _timm_net(name[5:])

    class TimmClassifier(LightningModule):
        """A timm network trained with cross-entropy and SGD (lr 0.1, momentum 0.9, weight decay 1e-4)."""

        def __init__(self):
            super().__init__()
            self.model = net

        def forward(self, x):
            return self.model(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self.model(x), y)
            self.log("train/loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    if image_cfg is None:
        roots = _config_roots()
        path = next((r / "demo" / "emo.yaml" for r in roots if (r / "demo" / "emo.yaml").is_file()), None)
        if path is None:
            raise FileNotFoundError(
                "zoo bench --train timm:<name> needs image data: configs/demo/emo.yaml (run from "
                "the repository root) or --config FILE with an image data: section"
            )
        image_cfg = (str(path), _read_yaml(path))
    path, cfg = image_cfg
    data_cls, dargs = _data_section(cfg, path)
    size = net.pretrained_cfg.get("input_size", (3, 224, 224))[-1]
    notes = [f"cross-entropy + SGD on {net.num_classes} classes, images {size} px"]
    if not _accepts(data_cls, "image_size"):
        raise ValueError(
            f"timm:{name[5:]} needs image data; {path}'s data module {data_cls.__name__} has no image_size"
        )
    dargs["image_size"] = size
    dargs.update(data_args)
    if batch_size is not None and _accepts(data_cls, "batch_size"):
        dargs["batch_size"] = batch_size
    return TimmClassifier(), data_cls(**dargs), f"{path} ({data_cls.__name__})", notes, {}


def _ragged(v) -> bool:
    """A list of tensors of different shapes: one per sample (a list of equal shapes is a batch's parts)."""
    return (
        isinstance(v, (list, tuple))
        and len(v) > 1
        and all(torch.is_tensor(t) for t in v)
        and len({tuple(t.shape) for t in v}) > 1
    )


def _count(batch) -> tuple[int, str]:
    """Samples in one batch and their unit (see the module docstring)."""
    if hasattr(batch, "num_nodes") and hasattr(batch, "edge_index"):  # a PyG graph
        return int(batch.num_nodes), "nodes"
    if isinstance(batch, dict):
        if "input_ids" in batch and "gold_starts" in batch:  # one coreference document
            return 1, "docs"
        if "x" in batch and torch.is_tensor(batch["x"]):
            return int(batch["x"].shape[0]), "nodes"
        per_sample = [v for v in batch.values() if _ragged(v)]
        if per_sample:  # collated as per-sample lists (LiDAR frames of different sizes)
            return len(per_sample[0]), "samples"
        batch = list(batch.values())
    if torch.is_tensor(batch):
        return int(batch.shape[0]), "samples"
    if isinstance(batch, (list, tuple)):
        for b in batch:
            if torch.is_tensor(b):
                return int(b.shape[0]), "images" if b.dim() == 4 else "rows"
    return 1, "batches"


def _step_timer(warmup: int, steps: int, device: torch.device):
    from lightning.pytorch import Callback

    class _StepTimer(Callback):
        """Times each training batch (``training_step`` + backward + optimizer steps) after ``warmup`` batches and
        stops the fit after ``warmup + steps`` batches, whatever the epoch length."""

        def __init__(self):
            self.seen, self.times, self.samples, self.losses, self.unit = 0, [], [], [], "samples"
            self.mem = PeakMemory(device)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if self.seen == warmup:
                self.mem.start()
            synchronize(device)
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            synchronize(device)
            dt = time.perf_counter() - self.t0
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if torch.is_tensor(loss):
                self.losses.append(float(loss.detach()))
            if self.seen >= warmup:
                n, self.unit = _count(batch)
                self.times.append(dt)
                self.samples.append(n)
            self.seen += 1
            if self.seen == warmup + steps:
                self.mem.stop()
                trainer.should_stop = True

    return _StepTimer()


def bench_training(
    name: str,
    batch_size: int | None = None,
    device: str | None = None,
    steps: int = 10,
    warmup: int = 3,
    compile: bool = False,
    channels_last: bool = False,
    precision: str | None = None,
    config: str | None = None,
    model_args: dict | None = None,
    data_args: dict | None = None,
    image_data: tuple[str, dict] | None = None,
    callbacks: list | None = None,
    strict: bool = True,
) -> dict:
    """One row: ``steps`` timed training steps of ``name`` under a Lightning ``Trainer`` (see the module docstring).

    ``model_args`` / ``data_args`` override init args of the module / data module; ``image_data`` is the
    ``(path, config)`` whose data a ``timm:`` model trains on; ``callbacks`` are added to the Trainer (tests).
    """
    import lightning.pytorch as pl

    if steps < 1 or warmup < 0:
        raise ValueError(f"zoo bench: --steps must be >= 1 and --warmup >= 0, got {steps} and {warmup}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"zoo bench: --batch-size must be >= 1, got {batch_size}")
    dev = _device(device)
    model_args, data_args = dict(model_args or {}), dict(data_args or {})
    if name.startswith("timm:"):
        module, dm, data, notes, cfg = _timm_setup(name, image_data, data_args, batch_size)
        if model_args:
            notes.append("--model-arg not applied (timm defaults)")
    else:
        module, dm, data, notes, cfg = _entry_setup(name, config, model_args, data_args, batch_size, strict)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    timer = _step_timer(warmup, steps, dev)
    t = cfg.get("trainer") or {}  # the recipe's part of a step: gradient clipping
    cfg_trainer = {k: t[k] for k in ("gradient_clip_val", "gradient_clip_algorithm") if t.get(k) is not None}
    # schedules read trainer.max_epochs (warm-up + cosine): the paper recipe's, so they are valid; the timer stops
    # the fit after warmup + steps batches anyway
    max_epochs = _recipe_max_epochs(name) or t.get("max_epochs") or 1000
    n = warmup + steps
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp, warnings.catch_warnings(), _quiet_lightning():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*Total length of .* across ranks is zero.*")
        warnings.filterwarnings("ignore", ".*val_dataloader.* no .validation_step.*")
        warnings.filterwarnings("ignore", ".*isinstance.treespec, LeafSpec.*")
        trainer = pl.Trainer(
            accelerator=dev.type,
            devices=[dev.index] if dev.type == "cuda" and dev.index is not None else 1,
            max_epochs=max(int(max_epochs), n),
            min_epochs=None,
            limit_train_batches=n,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            log_every_n_steps=1,
            default_root_dir=tmp,
            precision=precision,
            callbacks=[timer, *(callbacks or [])],
            **cfg_trainer,
        )
        trainer.fit(torch.compile(module) if compile else module, datamodule=dm)
    if len(timer.times) < steps:
        raise RuntimeError(
            f"zoo bench --train {name}: the fit ended after {timer.seen} batches, fewer than "
            f"--warmup {warmup} + --steps {steps}; lower them"
        )
    n_med = int(statistics.median(timer.samples))
    return {
        "name": name,
        "mode": "train",
        **_env(dev),
        "batch": n_med,
        "unit": timer.unit,
        **_timing(timer.times, timer.samples),
        "peak_mem_mb": timer.mem.peak_mb if dev.type == "cuda" else timer.mem.growth_mb,
        "params": _params(module),
        "steps": steps,
        "warmup": warmup,
        "loss": timer.losses[-1] if timer.losses else None,
        "data": data,
        "note": "; ".join(notes),
    }


def _recipe_max_epochs(name: str) -> int | None:
    """``trainer.max_epochs`` of the entry's paper recipe (``Entry.config``), when it can be read."""
    if name.startswith("timm:"):
        return None
    from zoo import registry

    cfg_file = registry.get(name).config
    path = registry.find_config(cfg_file) if cfg_file else None
    if path is None:
        return None
    epochs = (_read_yaml(path).get("trainer") or {}).get("max_epochs")
    return int(epochs) if isinstance(epochs, int) and epochs > 0 else None


@contextlib.contextmanager
def _quiet_lightning():
    """Lightning's INFO lines (GPU available, TPU...) would interleave with the table."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


# ==================================================================================================== data
def _data_child(spec: dict) -> dict:
    """In a fresh process: build the data module, then time ``prepare_data()`` + ``setup("fit")``."""
    from zoo import registry

    if spec.get("config"):
        path = Path(spec["config"])
        cfg = _read_yaml(path)
    else:
        path, cfg = demo_config(registry.get(spec["name"]))
    data_cls, dargs = _data_section(cfg, path)
    dargs.update(spec.get("data_args") or {})
    notes = []
    with tempfile.TemporaryDirectory(prefix="zoo-bench-data-") as tmp:
        if _accepts(data_cls, "cache_dir") and "cache_dir" not in (spec.get("data_args") or {}):
            dargs["cache_dir"] = tmp
            notes.append("fresh cache_dir")
        if dargs.get("root", "") is None:
            notes.append("root=None: generated/bundled data, its generation included")
        dm = data_cls(**dargs)
        with PeakMemory("cpu") as mem:
            t0 = time.perf_counter()
            dm.prepare_data()
            dm.setup("fit")
            dt = time.perf_counter() - t0
    return {
        "name": spec["name"],
        "mode": "data",
        **_env(torch.device("cpu")),
        "seconds": dt,
        "peak_mem_mb": mem.growth_mb,
        "data": f"{path} ({data_cls.__name__})",
        "note": "; ".join(notes),
    }


def bench_data(name: str, config: str | None = None, data_args: dict | None = None) -> dict:
    """One row: the preprocessing of ``name``'s demo data module (or ``config``'s) in a fresh Python process, so
    that neither a warm cache nor an earlier peak of this process enters the figures."""
    spec = json.dumps({"name": name, "config": config, "data_args": data_args or {}})
    code = (
        "import json, sys\nfrom zoo.bench import _data_child\n"
        "print('ZOO-BENCH-ROW ' + json.dumps(_data_child(json.loads(sys.argv[1]))))"
    )
    out = subprocess.run([sys.executable, "-c", code, spec], capture_output=True, text=True)
    rows = [ln[len("ZOO-BENCH-ROW ") :] for ln in out.stdout.splitlines() if ln.startswith("ZOO-BENCH-ROW ")]
    if out.returncode or not rows:
        tail = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"zoo bench --data {name}: the preprocessing process failed: {tail}")
    return json.loads(rows[-1])


# ============================================================================================ side by side
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
