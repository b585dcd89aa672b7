"""Each method's claim in miniature (``zoo.results.Claim``, declared as ``CLAIM`` in ``zoo/models/<method>``): the
rendering from demo rows (mean ± population std, seed count, direction, missing rows), the README's claims table, and
the declarations' demo configs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from zoo.results import Arm, Claim, append_rows, claim_details, claim_line, claim_of, measure_claim, methods

REPO = Path(__file__).resolve().parents[1]


def _rows(demo: str, variant: str, values: dict[int, float], protocol: str = "test", extra: dict | None = None):
    return [
        {
            "entry": f"demo/{demo}",
            "dataset": "demo",
            "variant": variant,
            "protocol": protocol,
            "seed": s,
            "seeds": 1,
            "git_commit": "abcdef0123",
            "note": "",
            "test/acc": v,
            **(extra or {}),
        }
        for s, v in values.items()
    ]


def _claim(**kw) -> Claim:
    base = dict(
        claim="A beats B.",
        paper="90.0 vs 80.0 (Table 2)",
        metric="test/acc",
        arms=(("A", "toy"), Arm("B", "toy", "off", ("--model.init_args.a=false",))),
        design="a toy",
        scale=100.0,
        unit="%",
        decimals=1,
    )
    return Claim(**{**base, **kw})


def test_claim_renders_mean_std_seeds_and_direction(tmp_path):
    append_rows("demo/toy", _rows("toy", "default", {0: 0.9, 1: 0.8, 2: 0.7}), tmp_path)
    append_rows("demo/toy", _rows("toy", "off", {0: 0.5, 1: 0.5, 2: 0.5}), tmp_path)
    append_rows("demo/toy", _rows("toy", "default", {0: 0.1}, protocol="fit"), tmp_path)  # another protocol: ignored
    r = measure_claim(_claim(), tmp_path)
    std = math.sqrt(((0.1) ** 2 + 0 + (0.1) ** 2) / 3) * 100  # population std
    assert claim_line(r) == (
        f"claim in miniature: A 80.0 ± {std:.1f} % vs B 50.0 ± 0.0 % "
        "(test/acc, mean ± population std over 3 seeds: 0-2)"
    )
    assert r.verdict == "shows"
    details = claim_details(r)
    assert "per seed: A 90.0 / 80.0 / 70.0 (seeds 0-2); B 50.0 / 50.0 / 50.0 (seeds 0-2)" in details
    assert "rows recorded at commit `abcdef0`" in details
    assert "B: `zoo reproduce --config configs/demo/toy.yaml --seeds 0-2 --record --variant off "
    "--model.init_args.a=false`" in details
    # the paper's direction reversed: the same rows do not show it
    assert measure_claim(_claim(higher_is_better=False), tmp_path).verdict == "does not show at this scale"


def test_equal_means_up_to_float32_rounding_do_not_show(tmp_path):
    """Rows hold float32 values: 0.225 logs as 0.22499999, so two arms of 60 hits in 240 differ by 3e-9 in the mean."""
    append_rows("demo/toy", _rows("toy", "default", {0: 0.22499999, 1: 0.27500001, 2: 0.25}), tmp_path)
    append_rows("demo/toy", _rows("toy", "off", {0: 0.25, 1: 0.2375, 2: 0.26249999}), tmp_path)
    assert measure_claim(_claim(), tmp_path).verdict == "does not show at this scale"


def test_claim_gap_within_spread_and_unequal_seeds(tmp_path):
    append_rows("demo/toy", _rows("toy", "default", {0: 0.9, 1: 0.5}), tmp_path)
    append_rows("demo/toy", _rows("toy", "off", {0: 0.6}), tmp_path)
    r = measure_claim(_claim(), tmp_path)
    assert r.verdict == "shows, within the seed spread"  # gap 10 points, std 20 points
    assert claim_line(r) == (
        "claim in miniature: A 70.0 ± 20.0 % (2 seeds: 0-1) vs B 60.0 % (1 seed: 0) (test/acc, mean ± population std)"
    )


def test_claim_missing_rows_say_not_yet_measured_with_the_command(tmp_path):
    append_rows("demo/toy", _rows("toy", "default", {0: 0.9}), tmp_path)
    claim = _claim(
        arms=(
            ("A", "toy"),
            Arm("B", "toy", "off", ("--model.init_args.a=false",), after=("pre",)),
            Arm("C", "toy", "c", unavailable="no C yet"),
        )
    )
    r = measure_claim(claim, tmp_path)
    assert r.verdict == "not yet measured"
    assert "B: not yet measured" in claim_line(r) and "C: not yet measured" in claim_line(r)
    details = claim_details(r)
    assert (
        "B (not yet measured): `zoo reproduce --config configs/demo/toy.yaml --after configs/demo/pre.yaml "
        "--seeds 0-2 --record --variant off --model.init_args.a=false`" in details
    )
    assert "C (not yet measured): not measurable yet: no C yet" in details
    # no rows at all (no file)
    assert measure_claim(_claim(), tmp_path / "empty").verdict == "not yet measured"


def test_extra_keys_are_reported_beside(tmp_path):
    append_rows("demo/toy", _rows("toy", "default", {0: 0.9}, extra={"test/one_class": 1}), tmp_path)
    append_rows("demo/toy", _rows("toy", "off", {0: 0.5}, extra={"test/one_class": 0}), tmp_path)
    r = measure_claim(_claim(extra="test/one_class"), tmp_path)
    assert "beside it, test/one_class: A 1.0000 vs B 0.0000" in claim_details(r)


def test_a_claim_measured_on_two_datasets(tmp_path):
    """``Claim.also``: the same claim on further data, each with its own arms, line and verdict."""
    append_rows("demo/toy", _rows("toy", "default", {0: 0.9, 1: 0.9}), tmp_path)
    append_rows("demo/toy", _rows("toy", "off", {0: 0.5, 1: 0.5}), tmp_path)
    append_rows("demo/toy2", _rows("toy2", "default", {0: 0.4}), tmp_path)
    append_rows("demo/toy2", _rows("toy2", "off", {0: 0.6}), tmp_path)
    second = _claim(label="toy2", arms=(("A", "toy2"), ("B", "toy2", "off")), design="a second toy")
    r = measure_claim(_claim(label="toy", also=(second,)), tmp_path)
    assert r.verdict == "shows" and [x.verdict for x in r.also] == ["does not show at this scale"]
    assert claim_line(r).startswith("claim in miniature on toy: A 90.0 ± 0.0 % vs B 50.0")
    assert claim_line(r.also[0]).startswith("claim in miniature on toy2: A 40.0 % vs B 60.0 %")
    with pytest.raises(ValueError, match="labels each"):
        _claim(also=(second,))  # the claim's own data unnamed
    with pytest.raises(ValueError, match="labels each"):
        _claim(label="toy", also=(_claim(),))


def test_a_claim_on_two_datasets_in_the_table_and_card(tmp_path, monkeypatch):
    import zoo.results as results
    from zoo import registry
    from zoo.card import card_body

    append_rows("demo/toy", _rows("toy", "default", {0: 0.9}), tmp_path)
    append_rows("demo/toy", _rows("toy", "off", {0: 0.5}), tmp_path)
    second = _claim(label="toy2", arms=(("A", "toy2"), ("B", "toy2", "off")), design="a second toy")
    claim = _claim(label="toy", also=(second,))
    monkeypatch.setattr(results, "methods", lambda: ["toy"])
    monkeypatch.setattr(results, "claim_of", lambda m: claim)
    ((_, _, _, line, verdict),) = results.claims_table(tmp_path)
    assert line.startswith("on toy: A 90.0 % vs B 50.0 % (test/acc") and "; on toy2: A: not yet measured" in line
    assert verdict.startswith("on toy: shows; on toy2: not yet measured: A: `zoo reproduce --config configs/demo/toy2")
    monkeypatch.setattr(results, "results_dir", lambda: tmp_path)
    body = card_body(next(e for e in registry.all_entries() if e.method == "aclip"), ())
    section = body.split("## Claim in miniature")[1].split("## Training recipe")[0]
    assert "Claim in miniature on toy: A 90.0 % vs B 50.0 %" in section
    assert "Claim in miniature on toy2: A: not yet measured" in section and "Design: a second toy" in section


def test_a_lead_from_degenerate_runs_does_not_show(tmp_path):
    """A fairness arm whose student predicts one class (ΔSP 0) does not win the claim: ``Claim.degenerate``."""
    flags = {0: 1, 1: 0, 2: 1}
    rows = _rows("toy", "default", {0: 0.0, 1: 0.02, 2: 0.0})
    for r in rows:
        r["test/one_class"] = flags[r["seed"]]
    append_rows("demo/toy", rows, tmp_path)
    append_rows("demo/toy", _rows("toy", "off", {0: 0.1, 1: 0.1, 2: 0.1}, extra={"test/one_class": 0}), tmp_path)
    lower = dict(higher_is_better=False, extra="test/one_class")
    assert measure_claim(_claim(**lower), tmp_path).verdict == "shows"  # without the flag: a clear lead
    r = measure_claim(_claim(**lower, degenerate="test/one_class"), tmp_path)
    assert r.verdict == "does not show: degenerate runs" and r.arms[0].degenerate == [0, 2]
    assert "degenerate runs (test/one_class): A 2 of 3 seeds; B 0 of 3 seeds" in claim_details(r)
    # the arm that trails anyway: the ordinary verdict
    assert measure_claim(_claim(degenerate="test/one_class"), tmp_path).verdict == "does not show at this scale"


def test_a_claim_needs_two_arms_or_a_reason():
    with pytest.raises(ValueError, match="two or more arms"):
        Claim(claim="x", paper="", metric="test/acc", arms=(("A", "toy"),))
    assert Claim(claim="x", paper="", no_miniature="one frame only").arms == ()


DECLARED = [(m, c) for m in methods() if (c := claim_of(m)) is not None]


@pytest.mark.parametrize("method,claim", DECLARED, ids=[m for m, _ in DECLARED])
def test_declared_claims_name_existing_demo_configs(method, claim):
    for arm in claim.arms:
        for stem in (arm.demo, *arm.after):
            assert (REPO / "configs" / "demo" / f"{stem}.yaml").is_file(), f"{method}: configs/demo/{stem}.yaml"
        assert all(o.startswith(("--model.", "--data.", "--trainer.")) for o in arm.overrides), arm.overrides
    assert claim.no_miniature or claim.design, f"{method}: a miniature states its design"
    measure_claim(claim)  # the committed rows (or their absence) render


def test_the_expected_methods_declare_claims():
    declared = {m for m, _ in DECLARED}
    assert {"aclip", "cmt", "lwsis", "reliant", "rsfd", "simvtp", "ssda3d", "tinymim", "xdeepint"} <= declared


def test_readme_claims_table_is_zoo_list_claims(capsys):
    """README's claims table is `zoo list --claims --markdown`: the figures are the committed demo rows."""
    from zoo.cli import main

    assert main(["list", "--claims", "--markdown"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    readme = (REPO / "README.md").read_text()
    table = readme.split("<!-- claims-table -->")[1].split("<!-- /claims-table -->")[0].strip().splitlines()
    assert table == lines, "README's claims table differs from `zoo list --claims --markdown`: paste its output"


def test_claims_plain_text_and_card_section(capsys):
    from zoo import registry
    from zoo.card import card_body
    from zoo.cli import main

    assert main(["list", "--claims"]) == 0
    out = capsys.readouterr().out
    assert "aclip\n  the paper's claim:" in out
    entry = next(e for e in registry.all_entries() if e.method == "aclip")
    body = card_body(entry, ())
    assert "## Claim in miniature" in body and "Claim in miniature: attentive" in body
    assert body.index("## Claim in miniature") < body.index("## Training recipe")
    ssda = next(e for e in registry.all_entries() if e.method == "ssda3d")
    assert "Claim in miniature: none (the shared data hold one nuScenes" in card_body(ssda, ())
    # a method that declares no claim has no such section
    bare = next((e for e in registry.all_entries() if claim_of(e.module.split(".")[2]) is None), None)
    assert bare is None or "## Claim in miniature" not in card_body(bare, ())


def test_claims_are_read_without_torch():
    """`zoo list --claims` and the declarations import nothing heavy."""
    import subprocess
    import sys

    code = "import sys; from zoo.results import claims_table; claims_table(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


def test_emo_ccgc_mmc_claims_state_their_arms_exactly():
    """EMO's design states both arms' parameter counts as the demo builds them; CCGC's baseline never leaves the
    warm-up (warmup_epochs = the demo's epochs); MMC declares no miniature and says why."""
    import yaml

    from zoo.models.emo.module import EMOModule

    emo, ccgc, mmc = (claim_of(m) for m in ("emo", "ccgc", "mmc_coref"))
    init = yaml.safe_load((REPO / "configs/demo/emo.yaml").read_text())["model"]["init_args"]
    for arm in emo.arms:
        net = {}
        for o in arm.overrides:
            key, value = o.removeprefix("--model.init_args.net.").split("=", 1)
            net[key] = yaml.safe_load(value)
        model = EMOModule(**init, net=net or None).model
        assert f"{sum(p.numel() for p in model.parameters()):,}" in emo.design, arm.label
    assert [a.variant for a in emo.arms] == ["default", "no_attn"]
    epochs = yaml.safe_load((REPO / "configs/demo/ccgc.yaml").read_text())["model"]["init_args"]["epochs"]
    assert ccgc.arms[1].overrides == (f"--model.init_args.warmup_epochs={epochs}",)
    assert mmc.no_miniature and not mmc.arms
