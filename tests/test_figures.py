"""Pictures of predictions (zoo.figures, zoo.callbacks.PredictionFigures): each of the six methods' tiny models, run
through Trainer.predict with the callback, writes a non-empty PNG of the requested pixel size."""

from __future__ import annotations

import os

import lightning.pytorch as pl
import pytest
import torch
from PIL import Image

from zoo.callbacks import PredictionFigures
from zoo.errors import UserError

SIZE = (360, 240)


def _ssda3d():
    from zoo.models.ssda3d.module import SSDA3DModule, example_batch

    pcr = [-51.2, -51.2, -5.0, 51.2, 51.2, 4.8]
    m = SSDA3DModule(
        net=dict(
            voxel_size=[0.8, 0.8, 9.8],
            point_cloud_range=pcr,
            pillar_filters=[16, 16],
            layer_nums=[1, 1],
            layer_strides=[2, 2],
            num_filters=[16, 32],
            upsample_strides=[1, 2],
            num_upsample_filters=[16, 16],
            head_channels=16,
            score_threshold=0.0,
        ),
        example_points=200,
        pseudo_label_threshold=0.0,
    )
    return m, example_batch(pcr, num_points=200, frames=2)


def _cmt():
    from zoo.models.cmt import SPECS
    from zoo.models.cmt.module import CMTModule

    m = CMTModule(**SPECS["cmt-pillar0200-r50"][3])
    pts, images, l2i = m.example_input_array
    boxes = torch.tensor([[10.0, 3.0, 0.0, 4.0, 2.0, 1.5, 0.3, 1.0, 0.0], [-5.0, 8.0, 0.0, 4.0, 2.0, 1.5, 1.2, 0, 0]])
    return m, {"points": pts, "images": images, "lidar2img": l2i, "boxes": [boxes], "labels": [torch.tensor([0, 1])]}


def _lwsis():
    from zoo.models.lwsis.module import LWSISModule

    m = LWSISModule(
        net=dict(
            depth=18,
            backbone_channels=[8, 16, 32, 64],
            stem_width=8,
            fpn=16,
            tower=1,
            mask_ch=8,
            mask_convs=1,
            mask_out=8,
            gn_groups=8,
        ),
        img_size=[64, 96],
    )
    targets = [{"boxes": torch.tensor([[10.0, 8.0, 40.0, 50.0]]), "labels": torch.tensor([0])} for _ in range(2)]
    return m, (torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0)) * 255, targets)


def _aclip():
    from zoo.models.aclip.module import ACLIPModule

    m = ACLIPModule(
        net=dict(
            img_size=32,
            patch_size=8,
            vision_width=32,
            vision_depth=2,
            vision_heads=2,
            embed_dim=16,
            context_length=8,
            vocab_size=64,
            text_width=16,
            text_heads=2,
            text_layers=1,
            ssl_mlp_dim=32,
            ssl_emb_dim=8,
            byol_hidden_dim=32,
            byol_dim=8,
        )
    )
    text = torch.randint(1, 63, (2, 8), generator=torch.Generator().manual_seed(0))
    text[:, -1] = 63
    return m, {"image": torch.randn(2, 3, 32, 32), "text": text}


def _rsfd():
    from zoo.models.rsfd.module import RSFDModule

    m = RSFDModule(
        net=dict(
            in_features=[6, 5],
            vocab_size=15,
            max_len=7,
            num_categories=0,
            d_model=16,
            num_heads=2,
            ffn_dim=32,
            dropout=0.0,
            encoder_dropout=0.0,
        ),
        beam_size=2,
        example_steps=3,
    )
    m.itow = ["<pad>", "<unk>", "<bos>", "<eos>"] + [f"w{i}" for i in range(11)]
    feats = {"m0": torch.randn(2, 3, 6), "m1": torch.randn(2, 3, 5)}
    return m, {"feats": feats, "index": torch.tensor([0, 1]), "refs": [["a w4 w5"], ["a w6"]]}


def _simvtp():
    from zoo.models.simvtp.module import SimVTPRetrievalModule

    m = SimVTPRetrievalModule(
        net=dict(
            img_size=16,
            patch_size=8,
            num_frames=4,
            tubelet_size=2,
            embed_dim=32,
            depth=2,
            num_heads=2,
            vocab_size=300,
            max_text_len=16,
        )
    )
    ids = torch.randint(1, 300, (3, 6), generator=torch.Generator().manual_seed(0))
    return m, {
        "video": torch.randn(3, 3, 4, 16, 16),
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "match_id": torch.tensor([0, 1, 2]),
        "caption": ["a red ball", "two dogs play", "a man cooks"],
    }


METHODS = {"ssda3d": _ssda3d, "cmt": _cmt, "lwsis": _lwsis, "aclip": _aclip, "rsfd": _rsfd, "simvtp": _simvtp}


def _loader(batch):
    """One ready batch as a DataLoader (a plain list would read as a list of data loaders)."""
    return torch.utils.data.DataLoader([batch], batch_size=None, collate_fn=lambda b: b)


def _trainer(tmp_path, callback):
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=str(tmp_path),
        callbacks=[callback],
    )


@pytest.mark.parametrize("method", list(METHODS))
def test_predict_writes_a_png_of_the_requested_size(method, tmp_path):
    torch.manual_seed(0)
    module, batch = METHODS[method]()
    cb = PredictionFigures(size=SIZE, max_items=2)
    _trainer(tmp_path, cb).predict(module, dataloaders=_loader(batch), return_predictions=False)
    path = tmp_path / "figures" / "predict.png"
    assert cb.written == [path] and path.stat().st_size > 1000, method
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == SIZE, (method, img.size)
        lo, hi = img.convert("L").getextrema()
        assert hi - lo > 50, f"{method}: a blank picture"
    assert [p.name for p in path.parent.iterdir()] == ["predict.png"]  # no temporary file left behind


def test_zoo_predict_of_the_ssda3d_demo_writes_its_bev_figure(tmp_path, monkeypatch, shared_data):
    """The real `zoo predict` path: the demo config's PredictionFigures writes <root>/figures/predict.png."""
    from pathlib import Path

    from zoo.cli import main

    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the demo names ../shared/data relative to the repo
    root = tmp_path / "run"
    assert main(
        [
            "predict",
            "--config",
            "configs/demo/ssda3d.yaml",
            f"--trainer.default_root_dir={root}",
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
            "--data.init_args.target.init_args.predict_split=n015-2018-07-24-11-22-45+0800.pkl",
        ]
    ) in (0, None)
    with Image.open(root / "figures" / "predict.png") as img:
        assert img.size == (1200, 800)  # PredictionFigures' default size


def test_figure_specs_carry_what_each_picture_needs():
    torch.manual_seed(0)
    with torch.no_grad():
        m, b = _ssda3d()
        spec = m.eval().figure_inputs(b, None, 1)
        assert (
            spec["kind"] == "bev_boxes" and len(spec["frames"]) == 1 and spec["frames"][0]["gt_boxes"].shape == (1, 7)
        )
        m, b = _lwsis()
        spec = m.eval().figure_inputs(b, None, 1)
        assert spec["kind"] == "instance_masks" and torch.equal(spec["images"][0]["gt_boxes"], b[1][0]["boxes"])
        m, b = _aclip()
        spec = m.eval().figure_inputs(b, None, 2)
        from zoo.models.aclip.masking import cells_kept

        # the module's own count at keep ratio 0.5: cells of 2x2 patches on the 4x4 grid
        assert spec["kind"] == "kept_tokens" and spec["grid"] == 4
        assert spec["images"][0]["keep"].numel() == 4 * cells_kept(4, 2, 0.5) < 16
        m, b = _simvtp()
        spec = m.eval().figure_inputs(b, None, 3)
        q = spec["queries"]
        assert [x["caption"] for x in q] == b["caption"] and [x["match"] for x in q] == [0, 1, 2]
        assert all(len(x["ranked"]) == 3 and x["scores"] == sorted(x["scores"], reverse=True) for x in q)


def test_validation_writes_val_png_and_unknown_kinds_are_refused(tmp_path):
    from zoo.figures import render

    module, batch = _aclip()

    class Val(type(module)):
        def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
            return None

    module = Val(**module.hparams)
    cb = PredictionFigures(dirpath=str(tmp_path / "out"), size=SIZE)
    _trainer(tmp_path, cb).validate(module, dataloaders=_loader(batch), verbose=False)
    assert cb.written == [tmp_path / "out" / "val.png"]
    with Image.open(cb.written[0]) as img:
        assert img.size == SIZE
    with pytest.raises(UserError, match="figure kind"):
        render({"kind": "pie"}, tmp_path / "x.png")


def test_drawing_leaves_the_random_stream_as_it_was(tmp_path):
    """A-CLIP's random mask draws cells with torch.rand: the figure must not shift the run's random numbers."""
    from zoo.models.aclip.module import ACLIPModule

    module, batch = _aclip()
    module = ACLIPModule(**{**module.hparams, "masking": "random"})
    cb = PredictionFigures(size=SIZE)
    torch.manual_seed(5)
    want = torch.rand(3)
    torch.manual_seed(5)
    cb._capture(module.eval(), None, batch)
    assert cb._spec["title"].startswith("A-CLIP random") and torch.equal(torch.rand(3), want)


def test_bev_box_corners_follow_the_heading():
    from zoo.figures import box_corners_bev

    c = box_corners_bev(torch.tensor([[1.0, 2.0, 0.0, 4.0, 2.0, 1.0, torch.pi / 2]]))[0]
    # dx = 4 along the heading (+y), so the front edge is at y = 2 + 2
    torch.testing.assert_close((c[0] + c[1]) / 2, torch.tensor([1.0, 4.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(c.mean(0), torch.tensor([1.0, 2.0]), atol=1e-6, rtol=0)


def test_bad_arguments_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="width, height"):
        PredictionFigures(size=(10, 10))
    with pytest.raises(UserError, match="max_items"):
        PredictionFigures(max_items=0)

    class NoFigure(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(1, 1)

        def predict_step(self, batch, batch_idx):
            return self.w(batch)

    with pytest.raises(UserError, match="no figure_inputs"):
        _trainer(tmp_path, PredictionFigures()).predict(NoFigure(), dataloaders=_loader(torch.ones(1, 1)))


def test_png_is_written_atomically(tmp_path, monkeypatch):
    """A failing draw leaves the previous picture and no temporary sibling."""
    from zoo import figures

    path = tmp_path / "f.png"
    path.write_bytes(b"old")
    fig = figures.new_figure(SIZE)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(fig), "savefig", boom)
    with pytest.raises(RuntimeError):
        figures.save_png(fig, path)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.png"]


# ------------------------------------------------------------------------------------------------ export with a figure
def _png(path):
    from zoo import figures

    return figures.save_png(figures.new_figure((128, 96)), path)


def test_export_embeds_the_run_figure_and_overwrite_replaces_exactly_the_files_zoo_wrote(tmp_path, capsys):
    import json

    import zoo
    from zoo import hub, registry
    from zoo.cli import main

    torch.manual_seed(0)
    module = zoo.create("emo-1m", **registry.get("emo-1m").tiny_overrides)
    ckpt = tmp_path / "run.ckpt"
    hp = {"_class_path": hub.class_path(module), **dict(module.hparams)}
    torch.save(
        {"state_dict": {f"model.{k}": v for k, v in module.model.state_dict().items()}, "hyper_parameters": hp}, ckpt
    )
    fig = _png(tmp_path / "figures" / "val.png")
    out = tmp_path / "export"
    assert main(["export", str(ckpt), str(out), "--figure", str(fig)]) == 0
    assert "figure.png" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "figure.png", "model.safetensors"]
    assert (out / "figure.png").read_bytes() == fig.read_bytes()
    assert "![predictions](figure.png)" in (out / "README.md").read_text()
    assert json.loads((out / "config.json").read_text())["figure"] == "figure.png"
    assert zoo.load(f"local-dir:{out}") is not None
    # --overwrite without a figure replaces the four files zoo wrote (the old figure.png included)
    assert main(["export", str(ckpt), str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    # a figure.png zoo did not write (config.json does not record it) is the user's: never replaced
    (out / "figure.png").write_bytes(b"my own picture")
    assert main(["export", str(ckpt), str(out), "--overwrite", "--figure", str(fig)]) == 2
    assert "figure.png" in capsys.readouterr().err and (out / "figure.png").read_bytes() == b"my own picture"
    (out / "figure.png").unlink()
    # nor a folder / link under that name, even where config.json records a figure
    assert main(["export", str(ckpt), str(out), "--overwrite", "--figure", str(fig)]) == 0
    (out / "figure.png").unlink()
    (out / "figure.png").mkdir()
    (out / "figure.png" / "keep.txt").write_text("mine")
    assert main(["export", str(ckpt), str(out), "--overwrite"]) == 2
    assert (out / "figure.png" / "keep.txt").read_text() == "mine"
    # the figure must be a PNG (regular file)
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(UserError, match="not a PNG"):
        hub.export(module, tmp_path / "other", figure=tmp_path / "notes.txt")
    assert not (tmp_path / "other").exists()


def test_hub_export_callback_embeds_the_latest_prediction_figure(tmp_path):
    from zoo.callbacks import HubExport

    module, batch = _aclip()

    class Fit(type(module)):
        def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
            return None

        def training_step(self, batch, batch_idx):
            return sum(p.sum() for p in self.parameters()) * 0.0

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    module = Fit(**module.hparams)
    figs, export = PredictionFigures(size=SIZE), HubExport(str(tmp_path / "hub"), which="last")
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=str(tmp_path),
        callbacks=[figs, export],
        max_steps=1,
        num_sanity_val_steps=1,
    )
    trainer.fit(module, train_dataloaders=_loader(batch), val_dataloaders=_loader(batch))
    assert figs.written == [tmp_path / "figures" / "val.png"]  # the sanity check draws nothing
    assert (tmp_path / "hub" / "figure.png").read_bytes() == (tmp_path / "figures" / "val.png").read_bytes()


def test_instance_masks_tint_the_masked_pixels(tmp_path):
    import numpy as np

    from zoo.figures import render

    image = torch.zeros(3, 40, 40)
    masks = torch.zeros(1, 40, 40, dtype=torch.bool)
    masks[0, :, :20] = True  # the left half
    spec = {
        "kind": "instance_masks",
        "images": [
            {
                "image": image,
                "masks": masks,
                "boxes": torch.tensor([[0, 0, 19, 39]]),
                "scores": torch.tensor([0.9]),
                "labels": torch.tensor([0]),
            }
        ],
    }
    with Image.open(render(spec, tmp_path / "m.png", (200, 200))) as img:
        px = np.asarray(img.convert("RGB")).astype(int)
    left, right = px[90:110, 60:90].mean((0, 1)), px[90:110, 110:140].mean((0, 1))
    assert left.sum() > right.sum() + 100 and right.max() < 30  # tinted mask over the black image; the rest stays black
