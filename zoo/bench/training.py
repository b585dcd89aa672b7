"""``zoo bench NAME --train``: the LightningModule's real ``training_step`` run by a Lightning ``Trainer`` on batches
of the entry's demo data, each batch timed by a callback (see :mod:`zoo.bench` for what the bench adapts and says)."""

from __future__ import annotations

import contextlib
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

from zoo.bench.inputs import (
    _accepts,
    _config_roots,
    _count,
    _data_section,
    _device,
    _env,
    _params,
    _read_yaml,
    _timing,
    _timm_net,
    demo_config,
    follow_model_data,
)
from zoo.profiling import PeakMemory, synchronize

# Init args that fit a model to its dataset (not its architecture): taken from the demo config's model when the
# entry's value differs, so that the entry's architecture can train on the demo's data.
DATA_ARGS = ("in_features", "num_clusters", "num_nodes", "num_fields", "vocab_sizes")


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
    over, taken = {}, {}
    for k in DATA_ARGS:
        if k in demo_model and k not in model_args and _accepts(module_cls, k) and init.get(k) != demo_model[k]:
            over[k] = taken[k] = demo_model[k]
    # the same data-bound sizes as overrides of the network (``net``, zoo.sizes), next to the entry's own overrides
    demo_net, net = dict(demo_model.get("net") or {}), dict(init.get("net") or {})
    if "net" not in model_args and _accepts(module_cls, "net"):
        for k in DATA_ARGS:
            if k in demo_net and net.get(k) != demo_net[k]:
                net[k] = taken[k] = demo_net[k]
                over["net"] = net
    if taken:
        notes.append(", ".join(f"{k}={v}" for k, v in taken.items()) + f" from {path.name}'s model (its data)")
    hook = getattr(module_cls, "bench_init_args", None)  # inputs of the step the module needs (a teacher)
    teacher, note = hook({**init, **over}, demo_model) if hook else ({}, "")
    if "teacher" not in model_args and teacher:
        over.update(teacher)
        notes.append(note)
    module = zoo.create(entry.name, **{**over, **model_args}).train()  # create() returns eval mode
    # what the model fixes (its data_config(): input size, tokenizer, text context...) its data follows
    facts = dict(module.data_config() or {}) if callable(getattr(module, "data_config", None)) else {}
    notes += follow_model_data(data_cls, dargs, facts, data_args)
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
