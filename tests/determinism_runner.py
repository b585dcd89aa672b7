"""Run ``zoo fit`` on a config in this process and write what it logged to a JSON file (used by test_determinism.py,
run as ``python tests/determinism_runner.py OUT.json -- <zoo fit arguments>`` in a fresh process; ``-- predict
<arguments>`` runs ``zoo predict`` instead, a chain's feature-extraction step, which logs nothing).

Every loss a training step returns and every metric at each validation end is recorded, through a callback appended
to the trainer's own (demos with ``logger: false`` log nothing to disk)."""

from __future__ import annotations

import functools
import json
import sys

from lightning.pytorch import Callback, Trainer

from zoo.cli import run_lightning


class Recorder(Callback):
    def __init__(self):
        self.events: list = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:  # manual optimisation returns nothing: what the step logged instead
            logged = {k: float(v) for k, v in trainer.callback_metrics.items() if "loss" in k and v.numel() == 1}
            loss = sum(logged.values()) if logged else None
        self.events.append(["train", trainer.global_step, None if loss is None else float(loss)])

    def on_validation_end(self, trainer, pl_module):
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
        self.events.append(["val", trainer.global_step, metrics])


def main(argv: list[str]) -> None:
    out, args = argv[0], argv[argv.index("--") + 1 :]
    rec = Recorder()
    init = Trainer.__init__

    @functools.wraps(init)  # jsonargparse reads the Trainer's arguments from the signature
    def with_recorder(self, *a, callbacks=None, **kw):
        init(self, *a, callbacks=[*(callbacks or []), rec], **kw)

    Trainer.__init__ = with_recorder
    sys.argv = sys.argv[:1]  # LightningCLI reads sys.argv as well as args
    sub = args.pop(0) if args and args[0] in ("fit", "predict") else "fit"
    cli = run_lightning([sub, *args])
    final = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
    with open(out, "w") as f:
        json.dump({"events": rec.events, "final": final}, f)


if __name__ == "__main__":
    main(sys.argv[1:])
