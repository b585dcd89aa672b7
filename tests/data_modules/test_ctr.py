"""CTRDataModule: published Criteo / Avazu layouts, the reference preprocessing, the split rule, the cache and the
errors (data_modules/ctr.py)."""

from __future__ import annotations

import csv
import math
import pickle
from collections import Counter

import numpy as np
import pytest
import torch

from zoo.data_modules.ctr import CTRDataModule, CTRFormatError, log_bin, write_synthetic_criteo


def _all(dm, split):
    b = dm.split(split)
    ids, ys = zip(*(b[k] for k in range(len(b)))) if len(b) else ((), ())
    return (
        np.concatenate([i.numpy() for i in ids]) if ids else np.zeros((0, dm.num_fields), np.int64),
        np.concatenate([y.numpy() for y in ys]) if ys else np.zeros(0, np.float32),
    )


def test_log_bin_reference_values():
    # floor(ln(x^2 + 1)); missing -> 0 (shares bin 0 with x = 0); negative values work
    assert log_bin(np.array([np.nan, 0, 1, -1, 2, 260, 17668])).tolist() == [0, 0, 0, 0, 1, 11, 19]


def test_criteo_sample_parses_into_fields_and_bins(shared_data, tmp_path):
    root = shared_data / "criteo_sample"
    dm = CTRDataModule("criteo", root=str(root), cache_dir=str(tmp_path), min_count=2, batch_size=64)
    dm.setup()
    assert dm.field_names == [f"I{i}" for i in range(1, 13)] + [f"C{i}" for i in range(1, 27)]
    assert dm.num_fields == 38
    ids, y = _all(dm, "train")
    with open(root / "criteo_sample.txt") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 200 and len(ids) == 200  # 200 rows: all have (i mod 1000) <= 800 -> train
    assert dm.meta["split_rows"] == {"train": 200, "test": 0}
    assert y.tolist() == [float(r["label"]) for r in rows]
    # integer fields: id = floor(ln(x^2 + 1)) + 1, missing -> bin 0 -> id 1
    for f in range(12):
        col = f"I{f + 1}"
        expect = [math.floor(math.log(float(r[col]) ** 2 + 1)) + 1 if r[col] else 1 for r in rows]
        assert ids[:, f].tolist() == expect, col
    assert dm.vocab_sizes[:12] == [64] * 12
    # categorical fields: vocabulary = values seen more than min_count (2) times, "" excluded; others -> 0
    vocab = dm.vocabulary()
    for j in range(26):
        col = f"C{j + 1}"
        counts = Counter(r[col] for r in rows)
        kept = {v for v, c in counts.items() if c > 2 and v != ""}
        assert set(vocab[col]) == kept, col
        assert dm.vocab_sizes[12 + j] == len(kept)
        expect = [vocab[col].index(r[col]) + 1 if r[col] in kept else 0 for r in rows]
        assert ids[:, 12 + j].tolist() == expect, col
    # most frequent value first
    c2 = Counter(r["C2"] for r in rows)
    assert vocab["C2"][0] == max(c2, key=lambda v: (c2[v], v != ""))


def test_avazu_sample_fields(shared_data, tmp_path):
    dm = CTRDataModule("avazu", root=str(shared_data / "avazu_sample"), cache_dir=str(tmp_path), min_count=1)
    dm.setup()
    assert dm.num_fields == 23 and dm.field_names[:3] == ["hour_of_day", "weekday", "C1"]
    ids, y = _all(dm, "train")
    with open(shared_data / "avazu_sample" / "avazu_sample.txt") as fh:
        rows = list(csv.DictReader(fh))
    assert y.tolist() == [float(r["click"]) for r in rows]
    vocab = dm.vocabulary()
    hours = [str(int(r["hour"][-2:])) for r in rows]
    assert [vocab["hour_of_day"][i - 1] if i else None for i in ids[:, 0]] == hours
    assert "id" not in dm.field_names and "click" not in dm.field_names


def test_split_rule_and_cache_reuse(tmp_path):
    raw = write_synthetic_criteo(tmp_path / "train.txt", rows=2500, seed=1)
    dm = CTRDataModule("criteo", root=str(tmp_path), min_count=5, batch_size=512, eval_batch_size=1000)
    dm.setup()
    # train iff (i mod 1000) <= 800: 801 + 801 + 500 rows
    assert dm.meta["split_rows"] == {"train": 2102, "test": 398}
    cached = dm.processed_dir()
    assert cached.parent == tmp_path / "train.txt.zoo-ctr", "the processed Arrow lives next to the raw file"
    _, y_test = _all(dm, "test")
    with open(raw) as fh:
        labels = [int(line.split("\t", 1)[0]) for line in fh]
    assert y_test.tolist() == [labels[i] for i in range(2500) if i % 1000 > 800]
    assert len(dm.train_dataloader()) == math.ceil(2102 / 512)
    # DataLoader workers get the file path, not a pickled copy of the memory-mapped table
    blob = pickle.dumps(dm.split("train"))
    assert len(blob) < 2000
    ids0, y0 = pickle.loads(blob)[1]
    assert torch.equal(ids0, dm.split("train")[1][0]) and torch.equal(y0, dm.split("train")[1][1])
    stamp = (cached / "train.arrow").stat().st_mtime_ns
    dm2 = CTRDataModule("criteo", root=str(tmp_path), min_count=5)
    dm2.setup()
    assert dm2.processed_dir() == cached and (cached / "train.arrow").stat().st_mtime_ns == stamp
    assert CTRDataModule("criteo", root=str(tmp_path), min_count=6).processed_dir() != cached


def test_synthetic_root_none(tmp_path, caplog):
    dm = CTRDataModule("criteo", root=None, cache_dir=str(tmp_path), synthetic_rows=3000, min_count=3)
    with caplog.at_level("INFO"):
        dm.setup()
    assert "synthetic" in caplog.text
    ids, y = _all(dm, "train")
    assert ids.shape == (2403, 38) and 0.1 < y.mean() < 0.6
    assert (ids >= 0).all() and (ids[:, 12:] <= np.array(dm.vocab_sizes[12:])).all()


def _corrupt(tmp_path, lineno, fn):
    path = write_synthetic_criteo(tmp_path / "train.txt", rows=60, seed=0)
    lines = path.read_text().splitlines()
    lines[lineno - 1] = fn(lines[lineno - 1])
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "lineno, fn, problem",
    [
        (37, lambda s: s.rsplit("\t", 1)[0], "expected 40 tab-separated columns, found 39"),
        (12, lambda s: "\t".join([s.split("\t")[0], "abc", *s.split("\t")[2:]]), "integer field I1 is not a number"),
        (50, lambda s: "2" + s[1:], "must be 0 or 1"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, lineno, fn, problem):
    path = _corrupt(tmp_path, lineno, fn)
    dm = CTRDataModule("criteo", root=str(tmp_path), min_count=1)
    with pytest.raises(CTRFormatError) as e:
        dm.setup()
    assert f"{path}:{lineno}:" in str(e.value) and problem in str(e.value)
    assert not any(
        p.name.startswith("train.txt.zoo-ctr") and any(p.iterdir()) for p in tmp_path.iterdir() if p.is_dir()
    ), "a failed build leaves no cache behind"


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.txt"):
        CTRDataModule("criteo", root=str(tmp_path)).setup()
    with pytest.raises(ValueError, match="synthetic Criteo"):
        CTRDataModule("avazu", root=None)
    bad = tmp_path / "train.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(CTRFormatError, match="header"):
        CTRDataModule("avazu", root=str(tmp_path)).setup()
