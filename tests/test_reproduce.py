"""Results as data: results/<method>.csv rows -> card metrics, and `zoo reproduce` appending per-seed rows."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from zoo import registry
from zoo.results import Protocol, ResultSpec, Variant, append_rows, our_metrics, read_rows, summarize
from zoo.reproduce import parse_seeds

REPO = Path(__file__).resolve().parents[1]


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("5") == [5]
    assert parse_seeds("0-1,7, 9") == [0, 1, 7, 9]
    for bad in ("", "a", "3-1"):
        with pytest.raises(ValueError, match="seeds"):
            parse_seeds(bad)


@pytest.mark.parametrize("ddof", [0, 1])
def test_aggregate_and_per_seed_rows_pool_exactly(ddof):
    """An aggregate row (mean, std over n seeds) pooled with per-seed rows gives the statistics of all the values."""
    rng = np.random.default_rng(0)
    old, new = rng.normal(60, 2, 10), rng.normal(58, 1, 3)
    rows = [{"entry": "e", "dataset": "d", "variant": "default", "protocol": "p", "seed": "", "seeds": "10",
             "acc": str(old.mean()), "acc_std": str(old.std(ddof=ddof))}]
    rows += [{"entry": "e", "dataset": "d", "variant": "default", "protocol": "p", "seed": str(i), "seeds": "1",
              "acc": str(v)} for i, v in enumerate(new)]
    (s,) = summarize(rows, ["acc"], ddof)
    both = np.concatenate([old, new])
    assert s.n == 13 and s.seeds == [0, 1, 2]
    assert s.mean["acc"] == pytest.approx(both.mean(), rel=1e-12)
    assert s.std["acc"] == pytest.approx(both.std(ddof=ddof), rel=1e-9)


def _spec():
    return ResultSpec(task="t", split="test", metrics={"acc": ("accuracy", "ACC")},
                      protocols={"p": Protocol("read at the end", {"acc": "test/acc"}, stage="test")},
                      variants={"default": Variant("as configured")}, decimals=2)


def test_rows_become_card_metrics_and_unknown_variants_are_refused(tmp_path):
    entry = registry.get("ccgc-bat")
    append_rows("ccgc", [{"entry": "ccgc-bat", "dataset": "bat", "variant": "default", "protocol": "p", "seed": s,
                          "seeds": 1, "acc": v} for s, v in ((0, 50.0), (1, 52.0))], tmp_path)
    (m,) = our_metrics(entry, _spec(), tmp_path)
    assert m.value == 51.0 and "n=2" in m.name and "±1.00" in m.name and "2 seeds (0-1)" in m.protocol
    append_rows("ccgc", [{"entry": "ccgc-bat", "dataset": "bat", "variant": "mystery", "protocol": "p", "seed": 2,
                          "seeds": 1, "acc": 1.0}], tmp_path)
    with pytest.raises(ValueError, match="mystery"):
        our_metrics(entry, _spec(), tmp_path)
    # re-measuring a seed replaces its row: a seed counts once
    append_rows("ccgc", [{"entry": "ccgc-bat", "dataset": "bat", "variant": "default", "protocol": "p", "seed": 1,
                          "seeds": 1, "acc": 56.0}], tmp_path)
    rows = [r for r in read_rows("ccgc", tmp_path) if r["variant"] == "default"]
    assert [(r["seed"], r["acc"]) for r in rows] == [("0", "50"), ("1", "56")]
    (tmp_path / "broken.csv").write_text("entry,variant,protocol,seeds\nx,,p,1\n")
    with pytest.raises(ValueError, match="broken.csv:2"):
        read_rows("broken", tmp_path)


def test_card_numbers_come_from_the_committed_csv():
    """The numbers in results/ccgc.csv are what `zoo card` shows (CCGC Cora, the paper-protocol row)."""
    with (REPO / "results" / "ccgc.csv").open() as f:
        row = next(r for r in csv.DictReader(f) if r["entry"] == "ccgc-cora" and r["variant"] == "default"
                   and r["protocol"] == "best")
    m = registry.get("ccgc-cora").our_metrics[0]
    assert m.value == float(row["acc"]) and f"n={row['seeds']}" in m.name


def _n_seeds(name, results_dir, monkeypatch):
    monkeypatch.setenv("ZOO_RESULTS_DIR", str(results_dir))
    return {m.name for m in registry.get(name).our_metrics if m.metric in ("acc", "accuracy")}


def test_reproduce_appends_rows_and_the_card_seed_count_follows(tmp_path, monkeypatch, capsys):
    from zoo.cli import main

    results = tmp_path / "results"
    shutil.copytree(REPO / "results", results)
    before = _n_seeds("ccgc-bat", results, monkeypatch)
    assert any("(default, best, n=10," in n for n in before), before
    monkeypatch.chdir(REPO)  # the configs name their data relative to the repository root
    rc = main(["reproduce", "ccgc-bat", "--seeds", "0-1", "--results-dir", str(results), "--runs-dir",
               str(tmp_path / "runs"), "--model.init_args.epochs=12", "--model.init_args.warmup_epochs=4",
               "--model.init_args.kmeans_n_init=1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "seed 1 (2/2)" in out and "ETA" in out
    rows = [r for r in read_rows("ccgc", results) if r["seed"] in ("0", "1")]
    assert [(r["seed"], r["protocol"]) for r in rows] == [("0", "best"), ("0", "last"), ("1", "best"), ("1", "last")]
    assert all(0 < float(r["acc"]) <= 100 and r["git_commit"] and float(r["wall_s"]) > 0 for r in rows)
    after = _n_seeds("ccgc-bat", results, monkeypatch)
    assert any("(default, best, n=12," in n for n in after), after


def test_reproduce_trains_the_dependency_first_and_reuses_it(tmp_path, monkeypatch):
    """RELIANT's student distils the teacher trained with the same seed: the teacher's fit runs once per seed."""
    from zoo.reproduce import reproduce

    monkeypatch.chdir(REPO)
    lines = []
    kw = dict(results_dir=tmp_path, runs_dir=tmp_path / "runs", echo=lines.append,
              overrides=["--trainer.max_epochs=2"])
    rows = reproduce("reliant-cpf.german", [0], variant="kd", **kw)
    assert sum("training reliant-teacher-gcn.german" in x for x in lines) == 1
    assert (tmp_path / "runs" / "reliant-teacher-gcn.german" / "seed0" / "checkpoint.txt").is_file()
    (row,) = rows
    assert row["variant"] == "kd" and {"acc", "sp", "eo", "auc", "one_class"} <= set(row)
    assert 0 <= row["acc"] <= 1 and row["one_class"] in (0.0, 1.0)
    reproduce("reliant-cpf.german", [0], **kw)  # the default (RELIANT) variant: same teacher, reused
    assert sum("training reliant-teacher-gcn.german" in x for x in lines) == 1
    assert [r["variant"] for r in read_rows("reliant", tmp_path)] == ["kd", "default"]
