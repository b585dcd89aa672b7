"""Results as data: results/<method>.csv rows -> card metrics, and `zoo reproduce` appending per-seed rows."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from zoo import registry
from zoo.reproduce import parse_seeds
from zoo.results import Protocol, ResultSpec, Variant, append_rows, our_metrics, read_rows, summarize

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
    """An aggregate row (mean, std over the seeds it names) pooled with per-seed rows of other seeds gives the
    statistics of all the values."""
    rng = np.random.default_rng(0)
    old, new = rng.normal(60, 2, 10), rng.normal(58, 1, 3)
    rows = [
        {
            "entry": "e",
            "dataset": "d",
            "variant": "default",
            "protocol": "p",
            "seed": "0-9",
            "seeds": "10",
            "acc": str(old.mean()),
            "acc_std": str(old.std(ddof=ddof)),
        }
    ]
    rows += [
        {
            "entry": "e",
            "dataset": "d",
            "variant": "default",
            "protocol": "p",
            "seed": str(10 + i),
            "seeds": "1",
            "acc": str(v),
        }
        for i, v in enumerate(new)
    ]
    (s,) = summarize(rows, ["acc"], ddof)
    both = np.concatenate([old, new])
    assert s.n == 13 and s.seeds == list(range(13))
    assert s.mean["acc"] == pytest.approx(both.mean(), rel=1e-12)
    assert s.std["acc"] == pytest.approx(both.std(ddof=ddof), rel=1e-9)


def _agg(seed_text="0-9", n=10, acc=60.0):
    return {
        "entry": "e",
        "dataset": "d",
        "variant": "default",
        "protocol": "p",
        "seed": seed_text,
        "seeds": n,
        "acc": acc,
        "acc_std": 1.0,
    }


def _one(seed, acc=50.0):
    return {"entry": "e", "dataset": "d", "variant": "default", "protocol": "p", "seed": seed, "seeds": 1, "acc": acc}


def test_a_seed_is_never_counted_twice(tmp_path):
    """Seed 0 after 'mean of seeds 0-9' was counted as an 11th seed; now the overlap is refused in the file and at
    append, an aggregate must name its seeds, and re-measuring all of its seeds replaces it."""
    with pytest.raises(ValueError, match="seed 0 of e .* counted twice"):
        summarize([{k: str(v) for k, v in r.items()} for r in (_agg(), _one(0))], ["acc"])
    with pytest.raises(ValueError, match="names no seed"):
        summarize([{k: str(v) for k, v in _agg("", 10).items()}], ["acc"])
    with pytest.raises(ValueError, match="says seeds=10 but names"):
        summarize([{k: str(v) for k, v in _agg("0-8", 10).items()}], ["acc"])
    append_rows("m", [_agg()], tmp_path)
    with pytest.raises(ValueError, match="counted twice"):
        append_rows("m", [_one(3)], tmp_path)
    append_rows("m", [_one(10)], tmp_path)  # a seed the aggregate does not cover is pooled with it
    (s,) = summarize(read_rows("m", tmp_path), ["acc"])
    assert s.n == 11 and s.seeds == list(range(11))
    append_rows("m", [_one(0)], tmp_path, replace_aggregates=True)  # re-measuring replaces the aggregate
    assert [r["seed"] for r in read_rows("m", tmp_path)] == ["10", "0"]


def test_committed_aggregate_rows_name_their_seeds():
    for path in sorted((REPO / "results").rglob("*.csv")):
        method = path.relative_to(REPO / "results").with_suffix("").as_posix()
        summarize(read_rows(method, REPO / "results"), [])  # raises on an unnamed or double-counted seed


def _spec():
    return ResultSpec(
        task="t",
        split="test",
        metrics={"acc": ("accuracy", "ACC")},
        protocols={"p": Protocol("read at the end", {"acc": "test/acc"}, stage="test")},
        variants={"default": Variant("as configured")},
        decimals=2,
    )


def test_rows_become_card_metrics_and_unknown_variants_are_refused(tmp_path):
    entry = registry.get("ccgc-bat")
    append_rows(
        "ccgc",
        [
            {
                "entry": "ccgc-bat",
                "dataset": "bat",
                "variant": "default",
                "protocol": "p",
                "seed": s,
                "seeds": 1,
                "acc": v,
            }
            for s, v in ((0, 50.0), (1, 52.0))
        ],
        tmp_path,
    )
    (m,) = our_metrics(entry, _spec(), tmp_path)
    assert m.value == 51.0 and "n=2" in m.name and "±1.00" in m.name and "2 seeds (0-1)" in m.protocol
    append_rows(
        "ccgc",
        [
            {
                "entry": "ccgc-bat",
                "dataset": "bat",
                "variant": "mystery",
                "protocol": "p",
                "seed": 2,
                "seeds": 1,
                "acc": 1.0,
            }
        ],
        tmp_path,
    )
    with pytest.raises(ValueError, match="mystery"):
        our_metrics(entry, _spec(), tmp_path)
    # re-measuring a seed replaces its row: a seed counts once
    append_rows(
        "ccgc",
        [
            {
                "entry": "ccgc-bat",
                "dataset": "bat",
                "variant": "default",
                "protocol": "p",
                "seed": 1,
                "seeds": 1,
                "acc": 56.0,
            }
        ],
        tmp_path,
    )
    rows = [r for r in read_rows("ccgc", tmp_path) if r["variant"] == "default"]
    assert [(r["seed"], r["acc"]) for r in rows] == [("0", "50"), ("1", "56")]
    (tmp_path / "broken.csv").write_text("entry,variant,protocol,seeds\nx,,p,1\n")
    with pytest.raises(ValueError, match="broken.csv:2"):
        read_rows("broken", tmp_path)


def test_card_numbers_come_from_the_committed_csv():
    """The numbers in results/ccgc.csv are what `zoo card` shows (CCGC Cora, its first pooled group)."""
    m = registry.get("ccgc-cora").our_metrics[0]
    variant, protocol = m.name.split("(", 1)[1].split(",")[:2]
    with (REPO / "results" / "ccgc.csv").open() as f:
        rows = [
            r
            for r in csv.DictReader(f)
            if r["entry"] == "ccgc-cora" and r["variant"] == variant and r["protocol"] == protocol.strip()
        ]
    n = sum(int(r["seeds"]) for r in rows)
    spec = registry.get("ccgc-cora").results
    assert m.value == round(sum(float(r["acc"]) * int(r["seeds"]) for r in rows) / n, spec.decimals)
    assert f"n={n}" in m.name


def _n_seeds(name, results_dir, monkeypatch):
    monkeypatch.setenv("ZOO_RESULTS_DIR", str(results_dir))
    return {m.name for m in registry.get(name).our_metrics if m.metric in ("acc", "accuracy")}


CCGC_SHORT = ["--model.init_args.epochs=12", "--model.init_args.warmup_epochs=4", "--model.init_args.kmeans_n_init=1"]


def test_reproduce_writes_the_runs_results_unless_asked_to_record(tmp_path, monkeypatch, capsys):
    """By default a user's `zoo reproduce` writes under its runs folder and leaves the tracked results/ alone; with
    --results-dir (or --record) it appends there, refuses seeds an aggregate already counts, and the card's seed count
    follows the rows."""
    from zoo.cli import main

    monkeypatch.chdir(REPO)  # the configs name their data relative to the repository root
    tracked = (REPO / "results" / "ccgc.csv").read_bytes()
    runs = tmp_path / "runs"
    assert main(["reproduce", "ccgc-bat", "--seeds", "0-1", "--runs-dir", str(runs), *CCGC_SHORT]) == 0
    out = capsys.readouterr().out
    assert "seed 1 (2/2)" in out and "ETA" in out and str(runs / "results") in out
    assert (REPO / "results" / "ccgc.csv").read_bytes() == tracked
    rows = read_rows("ccgc", runs / "results")
    assert [(r["seed"], r["protocol"]) for r in rows] == [("0", "best"), ("0", "last"), ("1", "best"), ("1", "last")]
    assert all(0 < float(r["acc"]) <= 100 and r["git_commit"] and float(r["wall_s"]) > 0 for r in rows)

    results = tmp_path / "results"
    shutil.copytree(REPO / "results", results)
    n0 = sum(
        int(r["seeds"])
        for r in read_rows("ccgc", results)
        if (r["entry"], r["variant"], r["protocol"]) == ("ccgc-bat", "default", "best")
    )
    append_rows(
        "ccgc",
        [
            {
                **{k: r[k] for k in ("entry", "dataset", "variant", "protocol", "acc")},
                "seed": "20-29",
                "seeds": 10,
                "acc_std": 1.0,
                "note": "an earlier aggregate",
            }
            for r in rows[:2]
        ],
        results,
    )
    assert any(f"(default, best, n={n0 + 10}," in n for n in _n_seeds("ccgc-bat", results, monkeypatch))
    args = ["--results-dir", str(results), "--runs-dir", str(runs), *CCGC_SHORT]
    with pytest.raises(ValueError, match=r"already counted in the aggregate row of seeds 20-29"):
        from zoo.reproduce import reproduce

        reproduce("ccgc-bat", [21, 30], results_dir=results, runs_dir=runs, overrides=CCGC_SHORT)
    assert main(["reproduce", "ccgc-bat", "--seeds", "30-31", *args]) == 0
    assert any(f"(default, best, n={n0 + 12}," in n for n in _n_seeds("ccgc-bat", results, monkeypatch))


def test_reproduce_a_demo_config_records_every_logged_scalar(tmp_path, monkeypatch, capsys):
    """`zoo reproduce --config configs/demo/X.yaml --record` appends to results/demo/X.csv, and `zoo list --demos`
    shows the pooled numbers."""
    from zoo.cli import main

    monkeypatch.chdir(REPO)
    monkeypatch.setenv("ZOO_RESULTS_DIR", str(tmp_path / "results"))
    short = [*CCGC_SHORT, "--trainer.max_epochs=12", "--model.init_args.eval_every=4"]
    assert (
        main(
            [
                "reproduce",
                "--config",
                "configs/demo/ccgc.yaml",
                "--seeds",
                "0-1",
                "--record",
                "--runs-dir",
                str(tmp_path / "runs"),
                *short,
            ]
        )
        == 0
    )
    rows = read_rows("demo/ccgc", tmp_path / "results")
    assert [(r["entry"], r["seed"], r["protocol"]) for r in rows] == [
        ("demo/ccgc", s, p) for s in ("0", "1") for p in ("fit", "test")
    ]  # the demo has a test loop
    metric_cols = [c for c in rows[0] if "/" in c and rows[0][c]]
    assert metric_cols, rows[0]
    capsys.readouterr()
    assert main(["list", "--demos", "--markdown"]) == 0
    table = capsys.readouterr().out
    assert "| configs/demo/ccgc.yaml | default | fit | 2 (0-1) |" in table and " ± " in table
    assert main(["reproduce", "ccgc-bat", "--config", "configs/demo/ccgc.yaml"]) == 2
    assert "exactly one of them" in capsys.readouterr().err


def test_reproduce_trains_the_dependency_first_and_reuses_it(tmp_path, monkeypatch):
    """RELIANT's student distils the teacher trained with the same seed: the teacher's fit runs once per seed."""
    from zoo.reproduce import reproduce

    monkeypatch.chdir(REPO)
    lines = []
    kw = dict(results_dir=tmp_path, runs_dir=tmp_path / "runs", echo=lines.append, overrides=["--trainer.max_epochs=2"])
    rows = reproduce("reliant-cpf.german", [0], variant="kd", **kw)
    assert sum("training reliant-teacher-gcn.german" in x for x in lines) == 1
    assert (tmp_path / "runs" / "reliant-teacher-gcn.german" / "seed0" / "checkpoint.txt").is_file()
    (row,) = rows
    assert row["variant"] == "kd" and {"acc", "sp", "eo", "auc", "one_class"} <= set(row)
    assert 0 <= row["acc"] <= 1 and row["one_class"] in (0.0, 1.0)
    reproduce("reliant-cpf.german", [0], **kw)  # the default (RELIANT) variant: same teacher, reused
    assert sum("training reliant-teacher-gcn.german" in x for x in lines) == 1
    assert [r["variant"] for r in read_rows("reliant", tmp_path)] == ["kd", "default"]


def test_reproduce_a_chained_demo_fits_its_predecessor_in_the_same_folder(tmp_path, monkeypatch, caplog):
    """The TinyMIM fine-tune demo reads the distillation demo's checkpoint under its own default_root_dir:
    --after fits the distillation first, same seed, same run folder."""
    from zoo.reproduce import reproduce_config

    monkeypatch.chdir(REPO)
    short = [
        "--trainer.max_epochs=1",
        "--trainer.max_steps=2",
        "--trainer.limit_val_batches=1",
        "--trainer.num_sanity_val_steps=0",
    ]
    with caplog.at_level("INFO", logger="zoo"):
        rows = reproduce_config(
            "configs/demo/tinymim-finetune.yaml",
            [3],
            overrides=short,
            results_dir=tmp_path,
            runs_dir=tmp_path / "runs",
            after=["configs/demo/tinymim-teacher.yaml,configs/demo/tinymim.yaml"],
            echo=lambda s: None,
        )
    run = tmp_path / "runs" / "demo" / "tinymim-finetune" / "default" / "seed3"
    assert f"fine-tuning from {run / 'distill' / 'checkpoints' / 'last.ckpt'}" in caplog.text
    assert [r["seed"] for r in rows][:1] == [3] and read_rows("demo/tinymim-finetune", tmp_path)


def test_reproduce_runs_a_comma_separated_chain_with_a_predict_step(tmp_path, monkeypatch):
    """RSFD's demo reads a CNN checkpoint (zoo fit) and the features + corpus a zoo predict step wrote: --after takes
    the two as one comma-separated list, runs them in order (the one with a prediction writer under predict) in the
    seed's folder, then fits and tests the captioner on their files."""
    from zoo.reproduce import _subcommand, reproduce_config

    monkeypatch.chdir(REPO)
    assert _subcommand("configs/demo/rsfd-features.yaml") == "predict"
    assert _subcommand("configs/demo/rsfd-cnn.yaml") == "fit"
    lines = []
    short = ["--trainer.max_epochs=1", "--trainer.max_steps=2", "--trainer.limit_val_batches=1"]
    rows = reproduce_config(
        "configs/demo/rsfd.yaml",
        [0],
        overrides=short,
        results_dir=tmp_path,
        runs_dir=tmp_path / "runs",
        after=["configs/demo/rsfd-cnn.yaml, configs/demo/rsfd-features.yaml"],
        echo=lines.append,
    )
    run = tmp_path / "runs" / "demo" / "rsfd" / "default" / "seed0"
    assert [ln.split(": ", 1)[1].split(" first")[0] for ln in lines[:2]] == [
        "fit configs/demo/rsfd-cnn.yaml",
        "predict configs/demo/rsfd-features.yaml",
    ]
    assert (run / "cnn" / "checkpoints" / "last.ckpt").is_file() and (run / "features" / "videodatainfo.json").is_file()
    assert [r["protocol"] for r in rows] == ["fit", "test"] and "test/cider" in rows[1]


def test_commit_label_ignores_recorded_rows_but_not_code(tmp_path):
    import subprocess

    from zoo.reproduce import _git_commit

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "m.csv").write_text("entry\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    clean = _git_commit(tmp_path)
    assert clean and not clean.endswith("-dirty")
    (tmp_path / "results" / "m.csv").write_text("entry\nrow\n")  # what --record appends
    assert _git_commit(tmp_path) == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert _git_commit(tmp_path) == f"{clean}-dirty"
