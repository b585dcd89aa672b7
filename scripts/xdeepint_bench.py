#!/usr/bin/env python
"""xDeepInt benchmarks (run them with ``nice``; numbers go in the model card / issue note).

    python scripts/xdeepint_bench.py train       # training rows/s, reference architecture, batch 4096
    python scripts/xdeepint_bench.py preprocess  # CTRDataModule preprocessing rows/s and peak memory, 1M-row file
    python scripts/xdeepint_bench.py proof       # planted crosses: xDeepInt h=16 vs h=1 vs logistic regression

``train`` times the module's own training step (forward, sum-reduced BCE, backward, G-FTRL + FTRL-Proximal steps)
on random ids over a Criteo-sized vocabulary (12 x 64 binned integers + 26 x ``--vocab`` categories), after warm-up.
``preprocess`` writes the synthetic file with scripts/make_synthetic_criteo.py's generator, then runs the
preprocessing in a fresh child process and reports its wall time and peak resident memory (``ru_maxrss``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def bench_train(args) -> dict:
    import torch

    from zoo.models.xdeepint.module import XDeepIntModule

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vocab = [64] * 12 + [args.vocab] * 26
    m = XDeepIntModule(vocab_sizes=vocab, num_subspaces=args.h)
    opts = m.configure_optimizers()
    ids = torch.stack([torch.randint(0, v + 1, (args.batch,)) for v in vocab], 1)
    y = (torch.rand(args.batch) < 0.25).float()

    def step():
        for o in opts:
            o.zero_grad()
        loss = m._loss(m.model(ids), y)
        loss.backward()
        for o in opts:
            o.step()

    for _ in range(args.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    dt = time.perf_counter() - t0
    with torch.no_grad():
        t1 = time.perf_counter()
        for _ in range(args.steps):
            m.model(ids)
        dt_inf = time.perf_counter() - t1
    return {"bench": "train", "batch": args.batch, "h": args.h, "threads": args.threads,
            "embedding_rows": 1 + sum(vocab), "steps": args.steps,
            "train_rows_per_s": round(args.batch * args.steps / dt), "s_per_step": round(dt / args.steps, 4),
            "inference_rows_per_s": round(args.batch * args.steps / dt_inf)}


_CHILD = """
import json, resource, sys, threading, time

def rss_anon_kib():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0

peak = [0]
done = threading.Event()

def sample():  # anonymous (heap) memory: excludes the memory-mapped Arrow files' page cache, which ru_maxrss counts
    while not done.is_set():
        peak[0] = max(peak[0], rss_anon_kib())
        time.sleep(0.02)

import pyarrow as pa
from zoo.data_modules.ctr import CTRDataModule
base = rss_anon_kib()
threading.Thread(target=sample, daemon=True).start()
t0 = time.perf_counter()
dm = CTRDataModule("criteo", root=sys.argv[1], cache_dir=sys.argv[2], min_count=20)
dm.prepare_data()
dt = time.perf_counter() - t0
done.set()
print(json.dumps({"seconds": dt, "rows": dm.meta["rows"], "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "anon_base_kib": base, "anon_peak_kib": peak[0], "arrow_pool_peak": pa.default_memory_pool().max_memory(),
                  "vocab_rows": sum(dm.vocab_sizes)}))
"""


def bench_preprocess(args) -> list[dict]:
    from zoo.data_modules.ctr import write_synthetic_criteo

    out = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for rows in args.rows:
            raw = Path(tmp) / f"synthetic_{rows}" / "train.txt"
            raw.parent.mkdir()
            t0 = time.perf_counter()
            write_synthetic_criteo(raw, rows, seed=0)
            gen = time.perf_counter() - t0
            baseline = subprocess.run([sys.executable, "-c", "import zoo.data_modules.ctr, datasets, resource; "
                                       "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
                                      capture_output=True, text=True, check=True)
            r = subprocess.run([sys.executable, "-c", _CHILD, str(raw), str(Path(tmp) / "cache")], capture_output=True,
                               text=True, check=True)
            res = json.loads(r.stdout.strip().splitlines()[-1])
            size = raw.stat().st_size
            out.append({"bench": "preprocess", "rows": rows, "file_mib": round(size / 2**20, 1),
                        "generate_s": round(gen, 1), "preprocess_s": round(res["seconds"], 1),
                        "rows_per_s": round(rows / res["seconds"]), "mib_per_s": round(size / 2**20 / res["seconds"], 1),
                        "peak_rss_mib": round(res["maxrss_kib"] / 1024),
                        "import_only_rss_mib": round(int(baseline.stdout.strip()) / 1024),
                        "peak_anon_over_imports_mib": round((res["anon_peak_kib"] - res["anon_base_kib"]) / 1024),
                        "arrow_pool_peak_mib": round(res["arrow_pool_peak"] / 2**20),
                        "kept_values": res["vocab_rows"]})
    return out


def bench_proof(args) -> list[dict]:
    """xDeepInt (K=16, L=4; h=16 and h=1, combined FTRL) vs logistic regression on the same one-hot features."""
    import warnings

    import lightning as L
    import numpy as np
    import scipy.sparse as sp
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from zoo.data_modules.ctr import CTRDataModule
    from zoo.models.xdeepint.module import XDeepIntModule

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    out = []
    dm = CTRDataModule("criteo", root=None, cache_dir=args.workdir, synthetic_rows=args.proof_rows,
                       batch_size=1024, eval_batch_size=16384)
    dm.setup()

    def arrays(split):
        b = dm.split(split)
        ids, y = zip(*(b[k] for k in range(len(b))))
        ids = torch.cat(ids).numpy()
        off = np.concatenate([[0], np.cumsum(np.asarray(dm.vocab_sizes) + 1)[:-1]])
        cols = (ids + off).ravel()
        rows = np.repeat(np.arange(len(ids)), ids.shape[1])
        x = sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(ids), int(sum(dm.vocab_sizes)) + len(off)))
        return x, torch.cat(y).numpy()

    (xtr, ytr), (xte, yte) = arrays("train"), arrays("test")
    for c in (0.01, 0.1, 1.0):
        auc = roc_auc_score(yte, LogisticRegression(C=c, max_iter=2000).fit(xtr, ytr).predict_proba(xte)[:, 1])
        out.append({"bench": "proof", "model": "logistic-regression", "C": c, "test_auc": round(auc, 4)})
    settings = {"A": dict(gftrl_lambda1=1.0, gftrl_lambda2=1.0),
                "B": dict(gftrl_alpha=0.05, gftrl_lambda1=0.1, gftrl_lambda2=1.0, ftrl_lr=0.05)}
    for name, kw in settings.items():
        for h in (16, 1):
            L.seed_everything(0, verbose=False)
            m = XDeepIntModule(num_subspaces=h, **kw)
            t = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, accelerator="cpu")
            t0 = time.perf_counter()
            t.fit(m, dm)
            r = t.test(m, dm, verbose=False)[0]
            out.append({"bench": "proof", "model": f"xdeepint K=16 L=4 h={h}", "setting": name, **kw,
                        "test_auc": round(r["test/auc"], 4), "test_logloss": round(r["test/logloss"], 4),
                        "test_nce": round(r["test/nce"], 4),
                        "feature_sparsity": round(r["test/feature_sparsity"], 3),
                        "interaction_sparsity": round(r["test/interaction_sparsity"], 3),
                        "fit_s": round(time.perf_counter() - t0, 1)})
            print(json.dumps(out[-1]), flush=True)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["train", "preprocess", "proof", "all"])
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--h", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=40_000, help="categories per categorical field (train bench)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--rows", type=int, nargs="+", default=[250_000, 1_000_000], help="preprocess bench file sizes")
    ap.add_argument("--proof-rows", type=int, default=100_000)
    ap.add_argument("--workdir", default=None, help="scratch folder (default: the system temp dir)")
    args = ap.parse_args(argv)
    if args.workdir is None:
        args.workdir = tempfile.mkdtemp(prefix="xdeepint_bench_")
    results = []
    if args.what in ("train", "all"):
        results.append(bench_train(args))
    if args.what in ("preprocess", "all"):
        results += bench_preprocess(args)
    if args.what in ("proof", "all"):
        results += bench_proof(args)
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
