"""Name resolution, strict loading, Hub folders (local and in the huggingface_hub cache layout), atomic export."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import zoo
from zoo import hub, registry


def tiny(name="emo-1m", **kw):
    torch.manual_seed(0)
    return zoo.create(name, **{**registry.get(name).tiny_overrides, **kw})


def put_in_cache(folder, cache, repo_id, commit="0123456789abcdef0123456789abcdef01234567", ref="main"):
    """Lay a Hub folder out as huggingface_hub's cache does: refs/<ref> -> snapshots/<commit>/<files>."""
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in ("config.json", "model.safetensors", "README.md"):
        shutil.copy(folder / f, snap / f)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / ref).write_text(commit)
    return snap


# ------------------------------------------------------------------------------------------- names
def test_list_models_wildcards_and_pretrained_filter():
    emo = zoo.list_models("emo*")
    assert emo == sorted(emo) and {"emo-1m", "emo-2m", "emo-5m", "emo-6m"} <= set(emo)
    assert zoo.list_models("emo-1*") == ["emo-1m"]
    with_w = set(zoo.list_models(pretrained=True))
    without = set(zoo.list_models(pretrained=False))
    assert with_w.isdisjoint(without) and with_w | without == set(zoo.list_models())
    assert all(registry.get(n).weights in ("hub", "official") for n in with_w)
    assert all(registry.get(n).weights in ("pending", "-") for n in without)
    assert "emo-1m" in with_w, "EMO's official net.pth files are public: status official"


def test_unknown_name_lists_close_matches():
    with pytest.raises(KeyError, match="emo-1m"):
        registry.get("emo-1n")
    with pytest.raises(KeyError, match="unknown model name"):
        zoo.create("no-such-model")


def test_path_like_strings_are_never_a_silent_fallback(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a registry name"):
        zoo.load("./not/there")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        zoo.load(f"local-dir:{tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="not a Hub repo id"):
        zoo.load("hf-hub:not a repo")


def test_folder_that_is_also_a_repo_id_is_ambiguous(tmp_path, monkeypatch):
    (tmp_path / "org" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="say which"):
        zoo.load("org/name")


def test_create_pretrained_without_weights_is_an_error():
    no_weights = zoo.list_models(pretrained=False)
    assert no_weights
    with pytest.raises(ValueError, match="no published weights"):
        zoo.create(no_weights[0], pretrained=True)


# ------------------------------------------------------------------------------------------- folders
def test_export_writes_a_hub_folder_and_loads_identically(tmp_path):
    m = tiny()
    x = m.example_input_array
    out = hub.export(m, tmp_path / "emo", name="emo-1m")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["name"] == "emo-1m" and cfg["module"] == registry.get("emo-1m").module
    assert cfg["init_args"]["num_classes"] == m.hparams.num_classes
    loaded = zoo.load(str(out))
    with torch.no_grad():
        torch.testing.assert_close(m.eval()(x), loaded(x))


def test_interrupted_export_keeps_the_old_folder(tmp_path, monkeypatch):
    m = tiny()
    out = hub.export(m, tmp_path / "emo", name="emo-1m")
    before = (out / "model.safetensors").read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(KeyboardInterrupt):
        hub.export(tiny(), out, name="emo-1m", overwrite=True)
    assert (out / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["emo"], "no temporary folder left behind"


def test_weights_of_another_model_are_refused_with_the_key_list(tmp_path):
    out = hub.export(tiny(), tmp_path / "a", name="emo-1m")
    other = hub.export(tiny("emo-2m"), tmp_path / "b", name="emo-2m")
    shutil.copy(other / "model.safetensors", out / "model.safetensors")
    with pytest.raises(hub.WeightsMismatchError, match="shape mismatches|missing keys|unexpected keys") as ei:
        zoo.load(f"local-dir:{out}")
    assert "another model" in str(ei.value)


def test_corrupt_safetensors_is_a_clear_error(tmp_path):
    out = hub.export(tiny(), tmp_path / "a", name="emo-1m")
    (out / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        zoo.load(f"local-dir:{out}")


def test_folder_without_weights_names_the_missing_file(tmp_path):
    out = hub.export(tiny(), tmp_path / "a", name="emo-1m")
    (out / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        zoo.load(f"local-dir:{out}")


# ------------------------------------------------------------------------------------------- Hub cache
def test_load_from_the_hub_cache_offline(tmp_path, hf_cache):
    m = tiny()
    out = hub.export(m, tmp_path / "emo", name="emo-1m")
    put_in_cache(out, hf_cache, "zoo-models/emo-test")
    loaded = zoo.load("hf-hub:zoo-models/emo-test@main")
    with torch.no_grad():
        torch.testing.assert_close(m.eval()(m.example_input_array), loaded(m.example_input_array))
    assert zoo.load("zoo-models/emo-test") is not None  # a bare repo id that is not a folder


def test_offline_and_not_cached_says_which_repo_and_how(hf_cache):
    with pytest.raises(FileNotFoundError, match=r"zoo-models/absent@v1.*HF_HUB_OFFLINE.*local-dir") as ei:
        zoo.load("hf-hub:zoo-models/absent@v1")
    assert "`hf download zoo-models/absent --revision v1`" in str(ei.value)
    assert "huggingface-cli" not in str(ei.value), "huggingface_hub no longer installs huggingface-cli"


def test_registry_name_loads_its_pinned_repo_from_the_cache(tmp_path, hf_cache, monkeypatch):
    import dataclasses

    sha = "fedcba9876543210fedcba9876543210fedcba98"
    e = registry.get("emo-1m")
    pinned = dataclasses.replace(e, hub_repo="zoo-models/emo-1m-test", revision=sha, official_url=None)
    assert pinned.weights == "hub" and pinned.pretrained
    monkeypatch.setitem(registry._load(), "emo-1m", pinned)
    m = tiny()
    out = hub.export(m, tmp_path / "emo", name="emo-1m")
    put_in_cache(out, hf_cache, "zoo-models/emo-1m-test", commit=sha)
    loaded = zoo.load("emo-1m")
    with torch.no_grad():
        torch.testing.assert_close(m.eval()(m.example_input_array), loaded(m.example_input_array))


# ------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_is_read_weights_only(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.ckpt"
    p.write_bytes(pickle.dumps({"state_dict": {}, "x": Evil()}))
    with pytest.raises(ValueError, match="weights-only"):
        hub.read_checkpoint(p)


def test_push_without_a_token_is_a_clear_error(tmp_path, monkeypatch):
    out = hub.export(tiny(), tmp_path / "a", name="emo-1m")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(PermissionError, match="`hf auth login`"):
        hub.push(out, "org/name")


def test_card_has_paper_and_our_numbers_labelled():
    """The paper's numbers and ours go into separate, labelled tables: emo-1m has only the paper's, ccgc-cora both."""
    card = str(hub.make_card(registry.get("emo-1m")))
    paper, ours = card.split("Measured by zoo (ours):")
    assert "| ImageNet-1k | validation | top-1 | 71.5 |" in paper and "_none yet_" in ours.split("## ")[0]
    card = str(hub.make_card(registry.get("ccgc-cora")))
    paper, ours = card.split("Measured by zoo (ours):")
    assert "| 73.88 |" in paper and "| 73.88 |" not in ours
    ours_first = f"| {registry.get('ccgc-cora').our_metrics[0].value:g} |"  # the pooled rows of results/ccgc.csv
    assert ours_first in ours.split("## ")[0] and ours_first not in paper


def _side(preprocess: dict):
    size = preprocess.get("input_size")
    return list(size[-2:]) if size else None


def test_export_card_states_the_modules_own_preprocessing(tmp_path):
    """An export's card and config.json state the preprocessing of the module it holds: its ``data_config()`` over
    the entry's (EMO at a small input side, not the registry's 224); without ``data_config`` the entry's as it is."""
    e = registry.get("emo-1m")
    m = tiny()
    side = (m.data_config() or {}).get("image_size") if hasattr(m, "data_config") else None
    want = [side, side] if side is not None else _side(e.preprocess)
    folder = hub.export(m, tmp_path / "named", name="emo-1m")
    cfg = json.loads((folder / "config.json").read_text())
    assert _side(cfg["preprocess"]) == want and cfg["preprocess"]["mean"] == e.preprocess["mean"]
    assert f"- input_size: {cfg['preprocess']['input_size']}" in (folder / "README.md").read_text()

    m.data_config = lambda: {"image_size": 64}  # a module trained at 64 px (the EMO demo)
    folder = hub.export(m, tmp_path / "at64", name="emo-1m")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["preprocess"]["input_size"] == [3, 64, 64] and "image_size" not in cfg["preprocess"]
    card = (folder / "README.md").read_text()
    assert "- input_size: [3, 64, 64]" in card and "[3, 224, 224]" not in card
    folder = hub.export(m, tmp_path / "unnamed")  # no entry matches: the module's own facts only
    assert "- image_size: 64" in (folder / "README.md").read_text()

    m.data_config = None  # no data_config: the entry's preprocessing
    assert hub.preprocess_of(m, e) == dict(e.preprocess)
    loaded = zoo.load(f"local-dir:{tmp_path / 'at64'}")
    assert loaded.model.state_dict().keys() == m.model.state_dict().keys()


def test_measured_metrics_go_into_a_valid_card(tmp_path):
    """Our numbers (no public URL) must still give model-index metadata that huggingface_hub accepts."""
    from huggingface_hub import ModelCard

    e = registry.get("reliant-cpf.bail")
    assert e.our_metrics, "reliant-cpf.bail carries measured numbers"
    card = ModelCard(str(hub.make_card(e)))
    values = [m["value"] for r in card.data.to_dict()["model-index"][0]["results"] for m in r["metrics"]]
    assert sorted(values) == sorted(m.value for m in (*e.paper_metrics, *e.our_metrics))
    assert "(ours)" in str(card) and e.our_metrics[0].protocol[:40] in str(card)


# ------------------------------------------------------------------------------------------- weights status
def test_weights_status_is_hub_only_at_a_pinned_commit():
    import dataclasses

    e = registry.get("emo-1m")
    bare = dataclasses.replace(e, hub_repo=None, official_url=None, official_hash=None)
    assert bare.weights == "-" and not bare.pretrained
    assert dataclasses.replace(bare, hub_repo="org/x").weights == "pending"  # revision "main": nothing pinned
    assert not dataclasses.replace(bare, hub_repo="org/x").pretrained
    assert dataclasses.replace(bare, hub_repo="org/x", revision="a" * 40).weights == "hub"
    assert dataclasses.replace(bare, official_url="https://example.org/net.pth").weights == "official"


def test_no_entry_claims_hub_weights_that_were_never_published():
    """Nothing was ever uploaded: an entry with a Hub repo but no pinned commit is 'pending', never loadable."""
    for e in registry.all_entries():
        if e.hub_repo and e.weights != "hub":
            assert e.weights in ("pending", "official") and (e.weights == "official") == e.pretrained, e.name
    assert registry.get("tinymim-base").weights == "pending" and not registry.get("tinymim-base").pretrained
    assert {registry.get(f"emo-{s}").weights for s in ("1m", "2m", "5m", "6m")} == {"official"}


def test_cards_and_list_say_the_weights_status(capsys):
    from zoo.cli import main

    emo = str(hub.make_card(registry.get("emo-1m")))
    assert "Weights (`official`)" in emo and registry.get("emo-1m").official_url in emo
    pending = str(hub.make_card(registry.get("tinymim-base")))
    assert "Weights (`pending`)" in pending and "python -m zoo.models.tinymim.convert" in pending
    assert "Weights (`-`)" in str(hub.make_card(registry.get("tinymim-small")))
    assert main(["list", "emo-1m"]) == 0 and main(["list", "tinymim-base"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [r[-1] for r in rows if r and r[0] in ("emo-1m", "tinymim-base")] == ["official", "pending"]
    assert main(["list", "--pretrained"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]}
    assert listed == set(zoo.list_models(pretrained=True)) and "tinymim-base" not in listed


def test_pending_entry_says_how_to_produce_its_weights(hf_cache):
    with pytest.raises(ValueError, match=r"no published weights yet.*python -m zoo.models.tinymim.convert"):
        zoo.load("tinymim-base")
    with pytest.raises(ValueError, match=r"no published weights yet.*zoo fit --config"):
        zoo.create(zoo.list_models("reliant-cpf.bail")[0], pretrained=True)


def test_card_lists_the_demos_of_a_method_whose_package_differs_from_its_prefix():
    # mmc-* entries live in zoo.models.mmc_coref: the card must still find configs/demo/mmc.yaml and its rows
    text = str(hub.make_card(registry.get("mmc-minilm-l6.en")))
    assert "configs/demo/mmc.yaml" in text
