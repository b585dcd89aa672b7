"""Bad input to the data modules ends in one UserError line that names the problem and the fix, or in a counted
warning where skipping is right (issue 23, section 4): info files without lidar_points, COCO segmentations that are not
polygons of numbers or lack file_name, short or non-UTF-8 CSV rows, NaN clouds, all-corrupt images, bad webdataset
samples. Each message is checked to be what the `zoo` command prints: one line (zoo.errors.user_error_message)."""

from __future__ import annotations

import io
import json
import logging
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from zoo.data_modules.driving import NuScenesDataModule, _FrameLoader
from zoo.data_modules.driving_formats import load_info_pickle
from zoo.data_modules.image_text import ImageTextDataModule
from zoo.data_modules.instance_seg import NuScenesInstanceSegDataModule, load_nuinsseg
from zoo.data_modules.video import VideoTextDataModule
from zoo.errors import UserError, user_error_message

NUS_INFO = "n015-2018-07-24-11-22-45+0800.pkl"


def _one_line(excinfo, *needles) -> str:
    """What `zoo` prints for the error: a single line with every needle in it."""
    msg = user_error_message(excinfo.value)
    assert msg is not None and "\n" not in msg and len(msg) < 400, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def _nuscenes_without_lidar(shared_data, tmp_path):
    """The shared nuScenes frame (symlinked) with an info file whose frame lacks lidar_points."""
    root = tmp_path / "nus"
    root.mkdir()
    for f in (shared_data / "nuscenes_demo").iterdir():
        if f.suffix == ".bin" or "CAM_FRONT__" in f.name:
            (root / f.name).symlink_to(f)
    info = load_info_pickle(shared_data / "nuscenes_demo" / NUS_INFO)
    del info["data_list"][0]["lidar_points"]
    (root / NUS_INFO).write_bytes(pickle.dumps(info, protocol=4))
    return root


# --------------------------------------------------------------------------------------------- info files
def test_ssda3d_info_without_lidar_points(shared_data, tmp_path):
    root = _nuscenes_without_lidar(shared_data, tmp_path)
    with pytest.raises(UserError) as e:
        NuScenesDataModule(root, train_split=NUS_INFO, val_split=NUS_INFO).frames("val")
    _one_line(e, NUS_INFO, "frame", "has no lidar_points.lidar_path", "tools/create_data.py")


def test_lwsis_info_without_lidar_points(shared_data, tmp_path):
    root = _nuscenes_without_lidar(shared_data, tmp_path)
    dm = NuScenesInstanceSegDataModule(str(root), cameras=["CAM_FRONT"], image_size=[64, 128])
    with pytest.raises(UserError) as e:
        dm.prepare_items()
    _one_line(e, "data_list[0]", "has no lidar_points.lidar_path")


# --------------------------------------------------------------------------------------------- point clouds
def _cloud(tmp_path, pts) -> dict:
    path = tmp_path / "frame.bin"
    np.asarray(pts, np.float32).tofile(path)
    return {
        "points_path": path,
        "names": ["car"],
        "boxes": np.array([[0, 0, 0, 4, 2, 1.5, 0]], np.float32),
        "frame_id": "f",
    }


def test_all_nan_cloud_is_an_error_and_nan_points_are_dropped_with_a_count(tmp_path):
    load = _FrameLoader("kitti", ["car"], {}, 0.0, "none", 0)
    with pytest.raises(UserError) as e:
        load(_cloud(tmp_path, np.full((6, 4), np.nan)))
    _one_line(e, "frame.bin", "all 6 points are NaN or infinite", "re-extract")
    pts = np.ones((5, 4), np.float32) * 0.5
    pts[1, 0], pts[3, 3] = np.nan, np.inf
    with pytest.warns(UserWarning, match="dropped 2 of 5 points with NaN"):
        frame = load(_cloud(tmp_path, pts))
    assert frame["points"].shape == (3, 4) and bool(frame["points"].isfinite().all())


# --------------------------------------------------------------------------------------------- COCO / nuInsSeg
def _coco(tmp_path, segmentation, image=None):
    image = image if image is not None else {"id": 1, "file_name": "a.jpg", "height": 90, "width": 160}
    coco = {
        "images": [image],
        "categories": [{"id": 3, "name": "car"}],
        "annotations": [{"id": 5, "image_id": 1, "category_id": 3, "segmentation": s} for s in segmentation],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    return path


def test_coco_polygon_with_fewer_than_3_points_is_a_counted_skip(tmp_path):
    good = [[10, 10, 50, 10, 50, 40, 10, 40]]
    path = _coco(tmp_path, [good, [[10, 10, 50, 10]], [[]], [[1, 2, 3, 4], *good]])
    with pytest.warns(
        UserWarning,
        match=r"skipped 2 mask\(s\) without a polygon of at least 3 points \(e.g. "
        r"annotation 1, annotation 2\)",
    ):
        out = load_nuinsseg(path)
    assert [r["mask"].sum() for r in out["a.jpg"]] == [1200, 1200]  # the 2-point polygon of the last one is dropped


@pytest.mark.parametrize(
    "segmentation, needle",
    [
        ([[10, 10, "x", 10, 50, 40]], "polygon 0 must be a flat list of numeric x, y coordinates"),
        ([[10, 10, None, 10, 50, 40]], "polygon 0 must be a flat list of numeric x, y coordinates"),
        ([[[10, 10], [50, 10], [50, 40]]], "polygon 0 must be a flat list"),
        ({"counts": [5, 10]}, "a COCO RLE needs size [height, width] and counts"),
    ],
)
def test_coco_non_numeric_segmentation_is_one_line(tmp_path, segmentation, needle):
    with pytest.raises(UserError) as e:
        load_nuinsseg(_coco(tmp_path, [segmentation]))
    _one_line(e, "coco.json: annotation 0", needle)


def test_coco_image_without_file_name_is_one_line(tmp_path):
    with pytest.raises(UserError) as e:
        load_nuinsseg(_coco(tmp_path, [[[10, 10, 50, 10, 50, 40]]], image={"id": 1, "height": 90, "width": 160}))
    _one_line(e, "images[0] lacks its id or file_name", "nuinsseg_converter.py")


# --------------------------------------------------------------------------------------------- CSV files
def _webvid(tmp_path, body: bytes) -> VideoTextDataModule:
    (tmp_path / "results_2M_train.csv").write_bytes(b"videoid,contentUrl,duration,page_dir,name\n" + body)
    return VideoTextDataModule(layout="webvid", root=str(tmp_path), frames=4, image_size=32, batch_size=2)


def test_webvid_short_row_is_one_line(tmp_path):
    dm = _webvid(tmp_path, b"1,http://x,PT00H00M10S,000001_000050,people ride bikes\n2,http://x,PT00H00M05S\n")
    with pytest.raises(UserError) as e:
        dm.read_split("train")
    _one_line(e, "results_2M_train.csv: line 3 has 3 of the header's 5 fields", "no name, page_dir", "re-download")


def test_webvid_non_utf8_is_one_line(tmp_path):
    dm = _webvid(tmp_path, "1,http://x,PT00H00M10S,000001_000050,caf\u00e9 au lait\n".encode("latin-1"))
    with pytest.raises(UserError) as e:
        dm.read_split("train")
    _one_line(e, "results_2M_train.csv: not UTF-8 text (byte 0xe9", "iconv")


@pytest.mark.parametrize("reader", ["read_msvd", "read_msrvtt_test", "read_caption_json"])
def test_other_video_caption_files_that_are_not_utf8_are_one_line(tmp_path, reader):
    from zoo.data_modules import video

    path = tmp_path / "captions.txt"
    path.write_bytes("a caf\u00e9 scene\tclip1\n".encode("latin-1"))
    with pytest.raises(UserError) as e:
        getattr(video, reader)(path, tmp_path)
    _one_line(e, "captions.txt: not UTF-8 text (byte 0xe9")


def test_aclip_non_utf8_csv_is_one_line(tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "a.jpg")
    (tmp_path / "pairs.csv").write_bytes("filepath,title\na.jpg,cr\u00e8me br\u00fbl\u00e9e\n".encode("latin-1"))
    dm = ImageTextDataModule(root=str(tmp_path / "pairs.csv"), image_size=32, context_length=16, batch_size=2)
    with pytest.raises(UserError) as e:
        dm.setup("fit")
    _one_line(e, "pairs.csv: not UTF-8 text", "convert the file to UTF-8")


# --------------------------------------------------------------------------------------------- images
def write_corrupt_pairs(folder, n: int = 4, good: int = 0):
    """``folder/pairs.csv`` naming ``n`` images of which only the first ``good`` decode."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["filepath,title"]
    for i in range(n):
        if i < good:
            Image.new("RGB", (40, 30), (200, 30, 30)).save(folder / f"{i}.jpg")
        else:
            (folder / f"{i}.jpg").write_bytes(b"\xff\xd8 truncated")
        rows.append(f"{i}.jpg,picture {i}")
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n")
    return folder / "pairs.csv"


def test_aclip_all_corrupt_images_stop_at_setup(tmp_path):
    dm = ImageTextDataModule(
        root=str(write_corrupt_pairs(tmp_path, n=12)), image_size=32, context_length=16, batch_size=2
    )
    with pytest.raises(UserError) as e:
        dm.setup("fit")
    _one_line(e, "none of 8 images sampled across its 12 rows decodes", "0.jpg", "re-download corrupt files")
    some = ImageTextDataModule(
        root=str(write_corrupt_pairs(tmp_path / "some", n=12, good=1)), image_size=32, context_length=16, batch_size=2
    )
    some.setup("fit")  # one decodable image is enough: the rest are counted skips while training
    assert len(some.train_set) == 12


def test_aclip_fewer_pairs_than_a_batch_is_one_line_not_zero_steps(tmp_path):
    dm = ImageTextDataModule(
        root=str(write_corrupt_pairs(tmp_path, n=3, good=3)), image_size=32, context_length=16, batch_size=4
    )
    dm.setup("fit")
    with pytest.raises(UserError) as e:
        dm.train_dataloader()
    _one_line(e, "3 training pairs are fewer than batch_size=4", "set data.init_args.batch_size to at most 3")


def _shard(path, samples):
    with tarfile.open(path, "w") as tar:
        for name, data in samples:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def test_skipped_webdataset_samples_are_reported(tmp_path, caplog):
    _shard(
        tmp_path / "00000.tar",
        [
            ("a.jpg", _jpeg()),
            ("a.txt", b"red"),
            ("b.jpg", b"junk"),
            ("b.txt", b"x"),
            ("c.jpg", _jpeg()),
            ("c.txt", b""),
        ],
    )
    dm = ImageTextDataModule(root=str(tmp_path), image_size=32, context_length=16, batch_size=2)
    dm.setup("fit")
    with caplog.at_level(logging.WARNING):
        assert len(list(dm.train_set)) == 1
    msgs = [r.getMessage() for r in caplog.records if "webdataset samples" in r.getMessage()]
    assert len(msgs) == 1 and "skipped 2 of 3 webdataset samples this pass" in msgs[0], msgs
    assert "1 with an undecodable image" in msgs[0] and "1 with an empty caption" in msgs[0]


def test_webdataset_without_a_usable_sample_is_one_line(tmp_path):
    _shard(tmp_path / "00000.tar", [("a.jpg", b"junk"), ("a.txt", b"red"), ("b.png", b"junk"), ("b.txt", b"x")])
    dm = ImageTextDataModule(root=str(tmp_path), image_size=32, context_length=16, batch_size=2)
    dm.setup("fit")
    with pytest.raises(UserError) as e:
        list(dm.train_set)
    _one_line(e, "no usable sample in 1 shard(s): skipped 2 with an undecodable image", "needs a txt caption")
