"""The ``zoo`` command.

- ``zoo fit|validate|test|predict --config configs/<method>.yaml``: Lightning's own LightningCLI, with subclass mode
  for the model and the data (``class_path``/``init_args`` in YAML), ``--print_config``, SaveConfigCallback.
- ``zoo list|export|push|card|env|bench``: the zoo's tools.
"""
from __future__ import annotations

import argparse
import sys

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def run_lightning(args: list[str] | None):
    """Run LightningCLI on ``args`` (``None``: ``sys.argv``) in-process (tests call this); return the CLI object."""
    from lightning.pytorch import LightningDataModule, LightningModule
    from lightning.pytorch.cli import LightningCLI

    import zoo.strategies  # noqa: F401  registers zoo_ddp / zoo_fsdp with Lightning's StrategyRegistry

    return LightningCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        auto_configure_optimizers=False,
    )


def _fmt_int(n) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n:,}"


def cmd_list(ns) -> int:
    from zoo import registry

    rows = [("name", "params", "GFLOPs", "input", "paper metric", "our metric", "weights")]
    for name in registry.list_models(ns.pattern, pretrained=True if ns.pretrained else None):
        e = registry.get(name)
        pm = e.paper_metrics[0] if e.paper_metrics else None
        om = e.our_metrics[0] if e.our_metrics else None
        size = e.preprocess.get("input_size")
        rows.append((
            name,
            _fmt_int(e.params),
            f"{e.flops / 1e9:.3f}" if e.flops else "-",
            "x".join(str(s) for s in size[1:]) if isinstance(size, (list, tuple)) else "-",
            f"{pm.name or pm.metric} {pm.value:g}" if pm else "-",
            f"{om.name or om.metric} {om.value:g}" if om else "-",
            "yes" if e.pretrained else "no",
        ))
    if ns.markdown:  # the README's model table is this output
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

    out = hub.export_source(ns.source, ns.dir, name=ns.name, module=ns.module)
    print(f"wrote {out} (config.json, model.safetensors, README.md)")
    return 0


def cmd_push(ns) -> int:
    from zoo import hub

    print(hub.push(ns.dir, ns.repo_id, revision=ns.revision, private=ns.private, overwrite_card=ns.overwrite_card))
    return 0


def cmd_card(ns) -> int:
    from zoo import hub, registry

    print(hub.make_card(registry.get(ns.name)))
    return 0


def cmd_env(ns) -> int:
    import platform

    import torch

    import zoo

    print(f"zoo {zoo.__version__}  python {platform.python_version()}  torch {torch.__version__}")
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
    if not ns.names:
        raise SystemExit("zoo bench: give model names (registry names or timm:<name>) or --op NAME")
    bench.bench_models(ns.names, batch_size=ns.batch_size, train=ns.train, compile=ns.compile,
                       channels_last=ns.channels_last, device=ns.device, steps=ns.steps or 10)
    return 0


def tools_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zoo",
        description="zoo: a PyTorch Lightning model zoo. Training: zoo fit|validate|test|predict --config FILE "
        "(LightningCLI; `zoo fit --help`).",
    )
    sub = p.add_subparsers(dest="cmd", metavar="{fit,validate,test,predict,list,export,push,card,env,bench}")
    s = sub.add_parser("list", help="registered models as a table")
    s.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'emo*'")
    s.add_argument("--pretrained", action="store_true", help="only models with published weights")
    s.add_argument("--markdown", action="store_true", help="a Markdown table (the README's)")
    s.set_defaults(fn=cmd_list)
    s = sub.add_parser("export", help="write a Hub folder from a Lightning .ckpt or a registry name")
    s.add_argument("source")
    s.add_argument("dir")
    s.add_argument("--name", help="registry name whose card to write (guessed when omitted)")
    s.add_argument("--module", help="LightningModule class path, when the checkpoint does not record it")
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
    s = sub.add_parser("env", help="versions, CUDA/Triton, which fused kernels would run")
    s.set_defaults(fn=cmd_env)
    s = sub.add_parser("bench", help="throughput, latency and peak memory")
    s.add_argument("names", nargs="*", help="registry names or timm:<name>, measured side by side")
    s.add_argument("--op", help="benchmark a custom op (reference vs kernel) instead")
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--train", action="store_true", help="forward+backward+optimizer step instead of inference")
    s.add_argument("--compile", action="store_true")
    s.add_argument("--channels-last", action="store_true")
    s.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    s.add_argument("--steps", type=int, default=None,
                   help="timed repetitions (models: 10; --op: 20 on CUDA, 3 on the CPU)")
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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_SUBCOMMANDS:
        _console_logging()
        # the console script: LightningCLI reads sys.argv itself (passing both makes it warn)
        run_lightning(None if argv == sys.argv[1:] else argv)
        return 0
    p = tools_parser()
    ns = p.parse_args(argv)
    if not getattr(ns, "fn", None):
        p.print_help()
        return 0
    try:
        return ns.fn(ns)
    except (KeyError, FileNotFoundError, ValueError, PermissionError, ImportError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"zoo {ns.cmd}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
