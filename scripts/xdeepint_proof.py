#!/usr/bin/env python
"""The baseline of the xDeepInt planted-crosses proof: logistic regression on the same one-hot features.

The xDeepInt side of the proof is a registry variant, run and recorded like every other number:

    zoo reproduce xdeepint-criteo --variant proof-A   # h=16 (bit-wise crossing); also proof-A-h1, proof-B, proof-B-h1

(configs/xdeepint-proof.yaml; rows in results/xdeepint.csv). This script stays because the baseline is a scikit-learn
model, not a zoo LightningModule, so `zoo reproduce` cannot run it. It builds the same 100k synthetic Criteo-format
rows (planted 2nd/3rd-order crosses, ``zoo.data_modules.ctr``), the same 80/20 split and vocabulary, one-hot encodes
the ids, and prints the test AUC for C = 0.01, 0.1, 1 (chosen on test, which favours the baseline).

    python scripts/xdeepint_proof.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import json
import tempfile


def main(argv=None) -> None:
    import numpy as np
    import scipy.sparse as sp
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from zoo.data_modules.ctr import CTRDataModule

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args(argv)
    dm = CTRDataModule(
        "criteo",
        root=None,
        cache_dir=tempfile.mkdtemp(prefix="xdeepint_proof_"),
        synthetic_rows=args.rows,
        batch_size=1024,
        eval_batch_size=16384,
    )
    dm.setup()

    def one_hot(split):
        ds = dm.split(split)
        ids, y = zip(*(ds[k] for k in range(len(ds))))
        ids = torch.cat(ids).numpy()
        offsets = np.concatenate([[0], np.cumsum(np.asarray(dm.vocab_sizes) + 1)[:-1]])
        cols = (ids + offsets).ravel()
        rows = np.repeat(np.arange(len(ids)), ids.shape[1])
        shape = (len(ids), int(sum(dm.vocab_sizes)) + len(offsets))
        return sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=shape), torch.cat(y).numpy()

    (xtr, ytr), (xte, yte) = one_hot("train"), one_hot("test")
    for c in (0.01, 0.1, 1.0):
        model = LogisticRegression(C=c, max_iter=2000).fit(xtr, ytr)
        auc = roc_auc_score(yte, model.predict_proba(xte)[:, 1])
        print(json.dumps({"model": "logistic-regression", "C": c, "test_auc": round(float(auc), 4)}))


if __name__ == "__main__":
    main()
