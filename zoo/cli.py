"""The ``zoo`` command.

- ``zoo fit|validate|test|predict --config configs/<method>.yaml``: Lightning's own LightningCLI
  (:func:`zoo.lightning_cli.run_lightning`), with subclass mode for the model and the data (``class_path``/``init_args``
  in YAML), ``--print_config``, SaveConfigCallback.
- ``zoo list|export|push|card|reproduce|env|bench``: the zoo's tools.
"""

from __future__ import annotations

import argparse
import sys

from zoo.lightning_cli import LIGHTNING_SUBCOMMANDS, run_lightning  # noqa: F401  (run_lightning: zoo.cli's API)


def _fmt_int(n) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n:,}"


def cmd_list(ns) -> int:
    from zoo import registry

    if ns.demos:  # the README's demo table: measured rows of results/demo/*.csv
        from zoo.results import demo_table

        rows = [("demo config", "variant", "protocol", "seeds", "metrics (mean ± std over seeds)"), *demo_table()]
        return _print_table(rows, ns.markdown)
    if ns.claims:  # the README's claims table: each method's CLAIM, measured from results/demo/*.csv
        from zoo.results import claims_table

        rows = [("method", "the paper's claim", "paper", "claim in miniature", "verdict"), *claims_table()]
        if ns.markdown:
            return _print_table(rows, True)
        for r in rows[1:]:  # too wide for columns: one block per method
            print("\n".join([r[0], *(f"  {h}: {v}" for h, v in zip(rows[0][1:], r[1:]) if v)]))
        return 0
    rows = [("name", "params", "GFLOPs", "input", "paper metric", "our metric", "weights")]
    for name in registry.list_models(ns.pattern, pretrained=True if ns.pretrained else None):
        e = registry.get(name)
        pm = e.paper_metrics[0] if e.paper_metrics else None
        om = e.our_metrics[0] if e.our_metrics else None
        size = e.preprocess.get("input_size")
        rows.append(
            (
                name,
                _fmt_int(e.params),
                f"{e.flops / 1e9:.3f}" if e.flops else "-",
                "x".join(str(s) for s in size[1:]) if isinstance(size, (list, tuple)) else "-",
                f"{pm.name or pm.metric} {pm.value:g}" if pm else "-",
                f"{om.name or om.metric} {om.value:g}" if om else "-",
                e.weights,  # hub | official | pending | - (zoo.registry.Entry.weights)
            )
        )
    return _print_table(rows, ns.markdown)


def _print_table(rows: list[tuple[str, ...]], markdown: bool) -> int:
    if markdown:  # the README's tables are this output
        for j, r in enumerate(rows):
            print("| " + " | ".join(c.replace("|", "/") for c in r) + " |")
            if j == 0:
                print("|" + "---|" * len(r))
        return 0
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def cmd_export(ns) -> int:
    from zoo import hub

    out = hub.export_source(
        ns.source,
        ns.dir,
        name=ns.name,
        module=ns.module,
        overwrite=ns.overwrite,
        allowed_init_args=tuple(ns.allow_init_arg or ()),
        figure=ns.figure,
    )
    print(f"wrote {out} (config.json, model.safetensors, README.md{', figure.png' if ns.figure else ''})")
    return 0


def cmd_push(ns) -> int:
    from zoo import hub

    print(hub.push(ns.dir, ns.repo_id, revision=ns.revision, private=ns.private, overwrite_card=ns.overwrite_card))
    return 0


def cmd_card(ns) -> int:
    from zoo import hub, registry

    print(hub.make_card(registry.get(ns.name)))
    return 0


def cmd_reproduce(ns) -> int:
    from zoo.reproduce import destination, parse_seeds, reproduce, reproduce_config

    _console_logging()
    bad = [a for a in ns.overrides if not a.startswith(("--trainer.", "--model.", "--data."))]
    if bad:
        raise ValueError(
            f"unrecognised argument(s) {' '.join(bad)}: zoo reproduce passes only --trainer.*, --model.* "
            "and --data.* overrides to the config"
        )
    if (ns.name is None) == (ns.config is None):
        raise ValueError("zoo reproduce takes a registry NAME or --config FILE (a demo config), exactly one of them")
    if ns.after and ns.config is None:
        raise ValueError("--after CONFIG[,CONFIG...] goes with --config (a demo that reads another demo's outputs)")
    kw = dict(
        variant=ns.variant, overrides=ns.overrides, results_dir=ns.results_dir, runs_dir=ns.runs_dir, record=ns.record
    )
    if ns.config is not None:
        rows = reproduce_config(ns.config, parse_seeds(ns.seeds), after=ns.after, **kw)
        shown = "`zoo list --demos` shows the pooled numbers" if ns.record or ns.results_dir else ""
    else:
        rows = reproduce(ns.name, parse_seeds(ns.seeds), **kw)
        shown = f"`zoo card {ns.name}` shows the pooled numbers" if ns.record else ""
    dest = destination(ns.results_dir, ns.runs_dir, ns.record)
    print(
        f"appended {len(rows)} row(s) under {dest}"
        + (f"; {shown}" if shown else " (the run's own results; --record writes into the repository's results/)")
    )
    return 0


def cmd_env(ns) -> int:
    import platform

    import torch

    from zoo.version import __version__

    print(f"zoo {__version__}  python {platform.python_version()}  torch {torch.__version__}")
    for pkg in ("lightning", "timm", "transformers", "torchmetrics", "huggingface_hub", "torch_geometric", "triton"):
        try:
            from importlib.metadata import version

            print(f"  {pkg:16s} {version(pkg)}")
        except Exception:
            print(f"  {pkg:16s} not installed")
    cuda = torch.cuda.is_available()
    print(f"CUDA available: {cuda}" + (f" ({torch.cuda.get_device_name(0)})" if cuda else ""))
    try:
        from zoo.ops import available
    except ImportError as e:
        print(f"fused kernels: zoo.ops not importable ({e})")
        return 0
    print("fused kernels:")
    for op, status in available().items():
        print(f"  {op:28s} {status}")
    return 0


def cmd_bench(ns) -> int:
    from zoo import bench

    if ns.op:
        from zoo.ops.bench import bench_op

        bench_op(ns.op, device=ns.device, reps=ns.steps)
        return 0
    bench.bench_models(
        ns.names,
        train=ns.train,
        data=ns.data,
        batch_size=ns.batch_size,
        device=ns.device,
        steps=ns.steps,
        warmup=ns.warmup,
        threads=ns.threads,
        json_path=ns.json,
        config=ns.config,
        model_args=_key_values(ns.model_arg, "--model-arg"),
        data_args=_key_values(ns.data_arg, "--data-arg"),
        compile=ns.compile,
        channels_last=ns.channels_last,
        precision=ns.precision,
    )
    return 0


def _key_values(items: list[str] | None, flag: str) -> dict:
    """``["k=v", ...]`` -> ``{k: YAML value of v}`` (``lr=1e-3`` -> 0.001, ``root=null`` -> None)."""
    import yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} {item!r}: expected KEY=VALUE, e.g. {flag} image_size=128")
        out[key] = yaml.safe_load(value)
    return out


def tools_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zoo",
        description="zoo: a PyTorch Lightning model zoo. Training: zoo fit|validate|test|predict --config FILE "
        "(LightningCLI; `zoo fit --help`).",
    )
    sub = p.add_subparsers(dest="cmd", metavar="{fit,validate,test,predict,list,export,push,card,reproduce,env,bench}")
    s = sub.add_parser("list", help="registered models as a table")
    s.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'emo*'")
    s.add_argument("--pretrained", action="store_true", help="only models whose weights load (status hub or official)")
    s.add_argument("--markdown", action="store_true", help="a Markdown table (the README's)")
    s.add_argument("--demos", action="store_true", help="the demos' measured rows (results/demo/*.csv) instead")
    s.add_argument(
        "--claims",
        action="store_true",
        help="each method's central claim in miniature, measured from results/demo/*.csv, beside the paper's number",
    )
    s.set_defaults(fn=cmd_list)
    s = sub.add_parser("export", help="write a Hub folder from a Lightning .ckpt or a registry name with weights")
    s.add_argument("source", help="a Lightning .ckpt, or a registry name whose weights are hub or official")
    s.add_argument("dir", help="the folder to write: new, empty, or an earlier zoo export (with --overwrite)")
    s.add_argument(
        "--name",
        help="registry name whose card to write (guessed when omitted); checked against the "
        "checkpoint's class, init args and tensor shapes",
    )
    s.add_argument(
        "--module",
        help="LightningModule class path to build, instead of the checkpoint's own "
        "(needed for a class outside zoo.*: only zoo.* classes are built from a file unasked)",
    )
    s.add_argument("--overwrite", action="store_true", help="replace DIR when it is an earlier zoo export")
    s.add_argument(
        "--figure",
        metavar="PNG",
        help="embed the run's figure in the card (figure.png), e.g. "
        "<run>/figures/val.png written by zoo.callbacks.PredictionFigures",
    )
    s.add_argument(
        "--allow-init-arg",
        action="append",
        metavar="NAME",
        help="honour the checkpoint's value of init "
        "arg NAME although it names code, a file or a URL (e.g. teacher, encoder): only for files you trust",
    )
    s.set_defaults(fn=cmd_export)
    s = sub.add_parser("push", help="upload a Hub folder (needs a token)")
    s.add_argument("dir")
    s.add_argument("repo_id")
    s.add_argument("--revision")
    s.add_argument("--private", action="store_true")
    s.add_argument("--overwrite-card", action="store_true", help="replace a README.md already on the Hub")
    s.set_defaults(fn=cmd_push)
    s = sub.add_parser("card", help="print a model's card")
    s.add_argument("name")
    s.set_defaults(fn=cmd_card)
    s = sub.add_parser(
        "reproduce",
        help="re-measure an entry's (or a demo's) numbers, one fit per seed, into a results file",
        epilog="Any --trainer.*, --model.* or --data.* argument is passed on to the config.",
    )
    s.add_argument("name", nargs="?", help="registry name (or give --config)")
    s.add_argument(
        "--config",
        help="a config with no registry entry, e.g. configs/demo/cmt.yaml: every logged scalar "
        "becomes a column of demo/<stem>.csv",
    )
    s.add_argument(
        "--after",
        action="append",
        metavar="CONFIG",
        help="with --config: run this config first, same seed and folder (e.g. configs/demo/tinymim.yaml before "
        "configs/demo/tinymim-finetune.yaml); a comma-separated list (or --after again) runs several in order, "
        "a config with a prediction writer under predict (e.g. configs/demo/rsfd-cnn.yaml,"
        "configs/demo/rsfd-features.yaml before configs/demo/rsfd.yaml)",
    )
    s.add_argument("--seeds", default="0", help="'0-9', '3' or '0,2,5' (default 0)")
    s.add_argument(
        "--variant",
        default="default",
        help="a named set of overrides of the entry (see its card); for --config, a label for the overrides given",
    )
    s.add_argument(
        "--record",
        action="store_true",
        help="append to the repository's results/ (what cards and the README read) instead of <runs-dir>/results/",
    )
    s.add_argument(
        "--results-dir",
        default=None,
        help="folder of <method>.csv (default: <runs-dir>/results, or the repository's results/ with --record)",
    )
    s.add_argument("--runs-dir", default="runs/reproduce", help="where the runs write logs and checkpoints")
    s.set_defaults(fn=cmd_reproduce, overrides=[])
    s = sub.add_parser("env", help="versions, CUDA/Triton, which fused kernels would run")
    s.set_defaults(fn=cmd_env)
    s = sub.add_parser("bench", help="throughput, step time and peak memory: inference, training steps, data")
    s.add_argument("names", nargs="*", help="registry names or timm:<name>, measured side by side")
    s.add_argument("--op", help="benchmark a custom op (reference vs kernel) instead")
    s.add_argument(
        "--train",
        action="store_true",
        help="time the module's training_step (loss, backward, its "
        "configure_optimizers) under a Lightning Trainer on batches of the entry's demo data",
    )
    s.add_argument(
        "--data",
        action="store_true",
        help="time the demo data module's preprocessing (prepare_data + setup) in a fresh process instead",
    )
    s.add_argument(
        "--batch-size", type=int, default=None, help="inference: 32; --train: the demo config's batch size unless given"
    )
    s.add_argument(
        "--steps", type=int, default=None, help="timed repetitions (models: 10; --op: 20 on CUDA, 3 on the CPU)"
    )
    s.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3)")
    s.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    s.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    s.add_argument("--precision", default=None, help="--train: Trainer precision, e.g. bf16-mixed, 16-mixed")
    s.add_argument("--compile", action="store_true")
    s.add_argument("--channels-last", action="store_true")
    s.add_argument(
        "--config", help="--train / --data: a LightningCLI YAML whose data: section to use instead of the demo config"
    )
    s.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="--train: override a model init arg")
    s.add_argument(
        "--data-arg",
        action="append",
        metavar="KEY=VALUE",
        help="--train / --data: override a data module init arg (e.g. root=/data/criteo/train.txt)",
    )
    s.add_argument("--json", metavar="PATH", help="also write the rows to PATH (JSON, atomically)")
    s.set_defaults(fn=cmd_bench)
    return p


def _console_logging() -> None:
    """zoo's INFO messages (data fallbacks, learning-rate scaling, fused kernels) on the console, as Lightning's."""
    import logging

    logger = logging.getLogger("zoo")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def report_user_error(cmd: str | None, exc: BaseException, broad: bool = False) -> int | None:
    """Print a user error (``zoo.errors.user_error_message``) as one ``zoo CMD: error: ...`` line and return the exit
    status 2; ``None`` when ``exc`` is not a user error (the caller re-raises it: a traceback)."""
    from zoo.errors import user_error_message
    from zoo.extras import missing_in_chain

    # an optional package that a core install leaves out: the line names the extra (zoo.extras)
    msg = missing_in_chain(exc) or user_error_message(exc, broad=broad, command=cmd)
    if msg is None:
        return None
    print(f"{'zoo ' + cmd if cmd else 'zoo'}: error: {msg} [--debug shows the traceback]", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """The console script. User errors end in one line and exit status 2; ``--debug`` (anywhere on the command line,
    also for the Lightning subcommands) or ``ZOO_DEBUG=1`` shows their traceback instead."""
    import os

    from zoo.errors import debug_requested

    from_sys = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != "--debug"]  # LightningCLI / argparse would reject it
    cmd = argv[0] if argv and not argv[0].startswith("-") else None
    try:
        if cmd in LIGHTNING_SUBCOMMANDS:
            _console_logging()
            if from_sys:
                # the console script: LightningCLI reads sys.argv itself (passing both makes it warn); DDP's child
                # processes re-run sys.argv, so they get the stripped line and the debug switch through the environment
                sys.argv[1:] = argv
                if debug:
                    os.environ["ZOO_DEBUG"] = "1"
                run_lightning(None)
            else:
                run_lightning(argv)
            return 0
        p = tools_parser()
        ns, extra = p.parse_known_args(argv)
        if extra and getattr(ns, "cmd", None) != "reproduce":
            p.error(f"unrecognized arguments: {' '.join(extra)}")
        if extra:
            ns.overrides = extra
        if not getattr(ns, "fn", None):
            p.print_help()
            return 0
        return ns.fn(ns)
    except Exception as e:
        status = None if debug else report_user_error(cmd, e, broad=cmd not in LIGHTNING_SUBCOMMANDS)
        if status is None:
            raise
        return status


if __name__ == "__main__":
    raise SystemExit(main())
