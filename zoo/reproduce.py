"""``zoo reproduce NAME --seeds 0-9``: any number on a card, re-measured into a results file: the run's own
``runs/reproduce/results/<method>.csv`` by default, the repository's ``results/<method>.csv`` with ``--record``.
``zoo reproduce --config configs/demo/cmt.yaml --seeds 0-2`` does the same for a demo config (every logged scalar,
into ``demo/<stem>.csv``).

Each seed is one run of the entry's config through the same LightningCLI path as ``zoo fit`` (``--seed_everything``
set, the variant's overrides and the user's ``--trainer.* / --model.* / --data.*`` arguments appended), followed by
``trainer.test`` on the best checkpoint (the final weights when the config keeps none) when a protocol reads the test
split. The method's :class:`zoo.results.ResultSpec` names the logged keys each protocol reads; every protocol gives
one row per seed.

A variant may depend on another entry's run (RELIANT's student distils the teacher trained with the same seed): the
dependency is trained first with its own config under ``<runs>/<dependency>/seed<k>`` (reused when that run already
finished; the user's ``--trainer.*`` overrides apply to it too) and its checkpoint is passed as the init argument the
variant names.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

from zoo import registry
from zoo.results import ResultSpec, append_rows, parse_seeds  # noqa: F401  (parse_seeds: zoo.reproduce's API)
from zoo.version import __version__

log = logging.getLogger(__name__)


def _spec(entry) -> ResultSpec:
    if entry.results is None:
        raise ValueError(
            f"{entry.name} has no results spec (its method records no measured numbers yet); "
            "entries with one: " + ", ".join(e.name for e in registry.all_entries() if e.results)
        )
    return entry.results


def _config(entry, config: str | None = None) -> str:
    config = config or entry.config
    if not config:
        raise ValueError(f"{entry.name} names no config file")
    path = registry.find_config(config)
    if path is not None:
        return str(path)
    raise FileNotFoundError(
        f"{config} (the config of {entry.name}) is not here: run zoo reproduce from the "
        "repository root, where configs/ is."
    )


def _logger_args(config: str, run_dir: Path) -> list[str]:
    """A logger the config names with its own ``save_dir`` is pointed at the run's folder."""
    import yaml

    trainer = (yaml.safe_load(Path(config).read_text()) or {}).get("trainer") or {}
    logger = trainer.get("logger")
    if isinstance(logger, dict) and "save_dir" in (logger.get("init_args") or {}):
        return [f"--trainer.logger.init_args.save_dir={run_dir}"]
    return []


def _git_commit(repo: Path | None = None) -> str:
    """The checkout's short commit, ``-dirty`` when a tracked file outside ``results/`` differs from it (rows that
    ``--record`` appended earlier are this command's own output, not a change of the code that measured them)."""
    repo = repo if repo is not None else Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{sha}-dirty" if sha and dirty else sha


def _device(trainer) -> str:
    import torch

    root = trainer.strategy.root_device
    if root.type == "cuda":
        return f"{torch.cuda.get_device_name(root)} x{trainer.world_size}"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def _subcommand(config: str) -> str:
    """``predict`` for a config whose trainer writes predictions (a ``BasePredictionWriter`` callback, e.g. a feature
    extraction step such as configs/demo/rsfd-features.yaml), else ``fit``."""
    import yaml
    from lightning.pytorch.callbacks import BasePredictionWriter

    from zoo.errors import UserError
    from zoo.registry import import_class

    trainer = (yaml.safe_load(Path(config).read_text()) or {}).get("trainer") or {}
    callbacks = trainer.get("callbacks") or []
    for cb in callbacks if isinstance(callbacks, list) else [callbacks]:
        path = cb.get("class_path") if isinstance(cb, dict) else None
        if path and "." in path:
            try:
                cls = import_class(path)
            except (ImportError, AttributeError, ValueError, UserError):
                continue
            if isinstance(cls, type) and issubclass(cls, BasePredictionWriter):
                return "predict"
    return "fit"


def _fit(config: str, seed: int, run_dir: Path, args: list[str], subcommand: str = "fit"):
    """One LightningCLI run (``fit``, or ``predict`` for a prerequisite step that writes files); -> the CLI object
    (its trainer, model and data module)."""
    import sys

    from zoo.lightning_cli import run_lightning

    run_dir.mkdir(parents=True, exist_ok=True)
    argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when both sys.argv and args are given
    try:
        return run_lightning(
            [
                subcommand,
                "--config",
                config,
                f"--seed_everything={seed}",
                f"--trainer.default_root_dir={run_dir}",
                "--trainer.enable_progress_bar=false",
                "--trainer.enable_model_summary=false",
                *_logger_args(config, run_dir),
                *args,
            ]
        )
    finally:
        sys.argv = argv


def _best_checkpoint(trainer) -> str | None:
    cb = trainer.checkpoint_callback
    path = getattr(cb, "best_model_path", "") if cb is not None else ""
    return path if path and Path(path).is_file() else None


def _dependency(name: str, seed: int, runs: Path, echo, trainer_args: list[str]) -> str:
    """Train (or reuse) the dependency entry's run for this seed; -> its checkpoint."""
    entry = registry.get(name)
    run_dir = runs / entry.name / f"seed{seed}"
    marker = run_dir / "checkpoint.txt"
    if marker.is_file() and Path(marker.read_text().strip()).is_file():
        return marker.read_text().strip()
    variant = entry.results.variants.get("default") if entry.results else None
    echo(f"zoo reproduce: training {entry.name} (seed {seed}) first, under {run_dir}")
    cli = _fit(_config(entry), seed, run_dir, [*(variant.args if variant else ()), *trainer_args])
    ckpt = _best_checkpoint(cli.trainer)
    if ckpt is None:
        raise RuntimeError(
            f"{entry.name}'s config kept no checkpoint under {run_dir}: a dependency needs one "
            "(add a ModelCheckpoint callback)."
        )
    marker.write_text(ckpt + "\n")
    return ckpt


def destination(results_dir: str | Path | None, runs_dir: str | Path, record: bool) -> Path:
    """Where rows go: ``results_dir`` when given; the repository's ``results/`` with ``record``; else the runs'
    own ``<runs_dir>/results`` (a user's run never changes the tracked results unless asked to)."""
    if results_dir is not None:
        return Path(results_dir)
    if record:
        from zoo.results import results_dir as repo_results

        return repo_results()
    return Path(runs_dir) / "results"


def _check_aggregates(method_or_demo: str, group: dict, seeds: list[int], dest: Path) -> None:
    """Before any run: refuse seeds that an aggregate row already counts unless all its seeds are re-measured."""
    from zoo.results import _group, csv_path, read_rows, row_seeds

    if not csv_path(method_or_demo, dest).is_file():
        return
    for r in read_rows(method_or_demo, dest):
        if int(r["seeds"]) == 1 or {k: r.get(k, "") for k in group} != group:
            continue
        covered = set(row_seeds(r))
        if covered & set(seeds) and not covered <= set(seeds):
            raise ValueError(
                f"seeds {sorted(covered & set(seeds))} of {'/'.join(_group(r))} are already counted in the aggregate "
                f"row of seeds {r['seed']} in {csv_path(method_or_demo, dest)}: re-measure all of {r['seed']} to "
                "replace it, or choose seeds it does not cover"
            )


def _test_after_fit(cli) -> bool:
    """A demo is tested when its data module and module define a test loop (as `make demo` tests EMO)."""
    from lightning.pytorch.utilities.model_helpers import is_overridden

    dm = cli.datamodule
    return dm is not None and is_overridden("test_dataloader", dm) and is_overridden("test_step", cli.model)


def _scalars(metrics: dict) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def _config_path(config: str) -> Path:
    path = registry.find_config(config) or (Path(config) if Path(config).is_file() else None)
    if path is None:
        raise FileNotFoundError(f"{config} is not a config file (give a path such as configs/demo/cmt.yaml)")
    return Path(path)


def reproduce_config(
    config: str,
    seeds: list[int],
    variant: str = "default",
    overrides: list[str] | None = None,
    results_dir: str | Path | None = None,
    runs_dir: str | Path = "runs/reproduce",
    record: bool = False,
    echo=print,
    after: list[str] | None = None,
) -> list[dict]:
    """A demo config (or any config with no registry entry), once per seed: every scalar the fit logged (protocol
    ``fit``) and, when the config has a test loop, every scalar ``trainer.test`` on the final weights returned
    (protocol ``test``), one row each, to ``<dest>/demo/<config stem>.csv`` with entry ``demo/<stem>``. ``after``:
    configs run first, in order, same seed, same run folder (a fine-tuning demo reads the pre-training demo's
    checkpoint under its ``default_root_dir``); each item may be a comma-separated list; a config whose trainer has a
    prediction writer runs under ``predict`` (a feature-extraction step), the others under ``fit``."""
    path = _config_path(config)
    first = [_config_path(c.strip()) for item in after or () for c in item.split(",") if c.strip()]
    stem = Path(path).stem
    demo = f"demo/{stem}"
    dest = destination(results_dir, runs_dir, record)
    dataset = "demo"
    for proto in ("fit", "test"):
        _check_aggregates(demo, {"entry": demo, "dataset": dataset, "variant": variant, "protocol": proto}, seeds, dest)
    written, times = [], []
    for i, seed in enumerate(seeds):
        t0 = time.perf_counter()
        run_dir = Path(runs_dir) / demo / variant / f"seed{seed}"
        for pre in first:
            sub = _subcommand(str(pre))
            echo(f"zoo reproduce {demo}: {sub} {pre} first (seed {seed}) under {run_dir}")
            _fit(str(pre), seed, run_dir, [a for a in overrides or () if a.startswith("--trainer.")], sub)
        cli = _fit(str(path), seed, run_dir, list(overrides or []))
        logged = {"fit": _scalars(cli.trainer.callback_metrics)}
        if _test_after_fit(cli):
            logged["test"] = {}
            for d in cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False):
                logged["test"].update(_scalars(d))
        wall = time.perf_counter() - t0
        times.append(wall)
        rows = []
        for proto, values in logged.items():
            row = {
                "entry": demo,
                "dataset": dataset,
                "variant": variant,
                "protocol": proto,
                "seed": seed,
                "seeds": 1,
                "wall_s": round(wall, 1),
                "zoo_version": __version__,
                "git_commit": _git_commit(),
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                "device": _device(cli.trainer),
                "note": " ".join(overrides or []),
            }
            row.update(values)
            rows.append(row)
        out = append_rows(demo, rows, dest, replace_aggregates=True)
        written += rows
        eta = (len(seeds) - i - 1) * sum(times) / len(times)
        shown = "; ".join(f"{k} {v:.4g}" for k, v in list(logged["fit"].items())[:6])
        echo(
            f"zoo reproduce {demo} [{variant}] seed {seed} ({i + 1}/{len(seeds)}): {shown} | {wall:.0f} s, "
            f"ETA {eta / 60:.1f} min -> {out}"
        )
    return written


def reproduce(
    name: str,
    seeds: list[int],
    variant: str = "default",
    overrides: list[str] | None = None,
    results_dir: str | Path | None = None,
    runs_dir: str | Path = "runs/reproduce",
    echo=print,
    record: bool = False,
) -> list[dict]:
    """Run entry ``name``'s config once per seed, read its protocols' metrics and append one row per (seed, protocol)
    to ``<dest>/<method>.csv``: ``results_dir`` when given, the repository's ``results/`` with ``record``, else
    ``<runs_dir>/results``. Returns the rows written."""
    entry = registry.get(name)
    spec = _spec(entry)
    if variant not in spec.variants:
        raise ValueError(f"{entry.name} has no variant {variant!r}; variants: {', '.join(spec.variants)}")
    var = spec.variants[variant]
    config = _config(entry, var.config)
    dataset = var.dataset or (entry.datasets[0] if entry.datasets else "")
    runs = Path(runs_dir)
    dest = destination(results_dir, runs_dir, record)
    for pname in spec.protocols:
        _check_aggregates(
            entry.method, {"entry": entry.name, "dataset": dataset, "variant": variant, "protocol": pname}, seeds, dest
        )
    written, times = [], []
    for i, seed in enumerate(seeds):
        t0 = time.perf_counter()
        trainer_args = [a for a in overrides or () if a.startswith("--trainer.")]
        deps = [
            f"--model.init_args.{arg}={_dependency(dep.format(dataset=dataset), seed, runs, echo, trainer_args)}"
            for arg, dep in var.depends.items()
        ]
        run_dir = runs / entry.name / variant / f"seed{seed}"
        cli = _fit(config, seed, run_dir, [*var.args, *deps, *(overrides or [])])
        trainer = cli.trainer
        logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if any(p.stage == "test" for p in spec.protocols.values()):
            tested = trainer.test(
                cli.model, datamodule=cli.datamodule, ckpt_path=_best_checkpoint(trainer), verbose=False
            )
            for d in tested:
                logged.update({k: float(v) for k, v in d.items()})
        wall = time.perf_counter() - t0
        times.append(wall)
        rows = []
        for pname, protocol in spec.protocols.items():
            missing = [key for key in protocol.keys.values() if key not in logged]
            if missing:
                raise RuntimeError(
                    f"{entry.name}: the run logged no {', '.join(missing)} (protocol {pname!r}); "
                    f"logged: {', '.join(sorted(logged)) or 'nothing'}"
                )
            row = {
                "entry": entry.name,
                "dataset": dataset,
                "variant": variant,
                "protocol": pname,
                "seed": seed,
                "seeds": 1,
                "wall_s": round(wall, 1),
                "zoo_version": __version__,
                "git_commit": _git_commit(),
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                "device": _device(trainer),
                "note": "",
            }
            for col, key in protocol.keys.items():
                scale = 1.0 if col in spec.counts else spec.scale
                row[col] = logged[key] * scale
            rows.append(row)
        path = append_rows(entry.method, rows, dest, replace_aggregates=True)
        written += rows
        eta = (len(seeds) - i - 1) * sum(times) / len(times)
        shown = "; ".join(
            f"{r['protocol']}: " + ", ".join(f"{col} {r[col]:.{spec.decimals}f}" for col in spec.metrics if col in r)
            for r in rows
        )
        echo(
            f"zoo reproduce {entry.name} [{variant}] seed {seed} ({i + 1}/{len(seeds)}): {shown} | {wall:.0f} s, "
            f"ETA {eta / 60:.1f} min -> {path}"
        )
    return written
