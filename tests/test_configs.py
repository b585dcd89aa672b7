"""Every registry entry's config trains that entry's architecture: the config, parsed by LightningCLI
(``--print_config``, nothing trained or built), names the entry's LightningModule with the entry's init args, which
since sizes are stated once (``zoo/models/<method>/sizes.py``) are the entry's ``size`` (plus the few objective args an
entry fixes): the config names the entry's size."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import yaml

from zoo import registry
from zoo.cli import run_lightning

REPO = Path(__file__).resolve().parents[1]


def _wiring(entry) -> set[str]:
    """Init args a variant fills with another run's output (RELIANT's teacher checkpoint): not architecture."""
    if entry.results is None:
        return set()
    return {arg for v in entry.results.variants.values() for arg in v.depends}


def _parsed(config: str, monkeypatch) -> dict:
    monkeypatch.setattr("sys.argv", ["zoo"])  # LightningCLI warns when both sys.argv and args are given
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
        run_lightning(["fit", "--config", str(REPO / config), "--print_config"])
    assert e.value.code in (0, None), out.getvalue()[-2000:]
    return yaml.safe_load(out.getvalue())


@pytest.mark.parametrize("name", registry.list_models())
def test_entry_config_builds_the_entry(name, monkeypatch):
    entry = registry.get(name)
    assert entry.config, f"{name} names no config"
    model = _parsed(entry.config, monkeypatch)["model"]
    assert model["class_path"] == entry.module
    got = model.get("init_args", {})
    for key, want in entry.init_args.items():
        if key in _wiring(entry):
            continue
        assert key in got, f"{entry.config} does not set {key} (entry {name}: {want!r})"
        assert got[key] == want, f"{entry.config}: {key} = {got[key]!r}, entry {name} says {want!r}"


def test_configs_are_named_by_one_entry_or_are_shared_on_purpose():
    """Distinct architectures get distinct configs: two entries share a config only when their init args agree."""
    by_config: dict[str, list] = {}
    for e in registry.all_entries():
        by_config.setdefault(e.config, []).append(e)
    for config, entries in by_config.items():
        first = {k: v for k, v in entries[0].init_args.items() if k not in _wiring(entries[0])}
        for e in entries[1:]:
            assert {k: v for k, v in e.init_args.items() if k not in _wiring(e)} == first, (config, e.name)


@pytest.mark.parametrize("config", sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").rglob("*.yaml")))
def test_logs_and_checkpoints_follow_default_root_dir(config, monkeypatch, tmp_path):
    """No config hard-codes where its own run writes: logger and checkpoint folders derive from default_root_dir."""
    monkeypatch.setattr("sys.argv", ["zoo"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        run_lightning(
            ["fit", "--config", str(REPO / config), f"--trainer.default_root_dir={tmp_path}", "--print_config"]
        )
    trainer = yaml.safe_load(out.getvalue())["trainer"]
    logger = trainer.get("logger")
    dirs = (
        [logger["init_args"]["save_dir"]]
        if isinstance(logger, dict) and "save_dir" in logger.get("init_args", {})
        else []
    )
    dirs += [
        cb["init_args"]["dirpath"]
        for cb in trainer.get("callbacks") or []
        if isinstance(cb, dict) and (cb.get("init_args") or {}).get("dirpath")
    ]
    for d in dirs:
        assert str(d).startswith(str(tmp_path)), f"{config}: {d} does not follow trainer.default_root_dir"
