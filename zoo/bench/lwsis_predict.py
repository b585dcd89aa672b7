"""``zoo bench --op lwsis-predict``: LWSIS's whole prediction against torchvision's FCOS R-50's whole prediction
(issue 26), interleaved in one thread like the other peer rows (:mod:`zoo.bench.peers`).

LWSIS (:meth:`zoo.models.lwsis.model.CondInst.predict`, size :data:`LWSIS_PREDICT_SIZE`) runs its network, FCOS
post-processing (score threshold, top-k, class-wise NMS) and one dynamic mask per kept detection, upsampled to the
image and thresholded. The peer is ``torchvision.models.detection.fcos_resnet50_fpn`` called as a user calls it (a
list of 0..1 images; its transform normalises, resizes and batches), boxes only. Both have random weights (nothing is
downloaded) and the 10 nuScenes classes, at :data:`LWSIS_PREDICT_HW`: torchvision's transform is told to keep that
size (``min_size``, ``max_size``), and its score threshold is set to LWSIS's 0.05 (AdelaiDet's ``INFERENCE_TH_TEST``;
torchvision's default is 0.2). Random weights score every location about sqrt(0.01 x 0.5) = 0.07 (the class prior
times an untrained centerness), so both keep their maximum of 100 detections: the most mask work LWSIS can have.

Rows: the full prediction, and LWSIS's network alone (no post-processing), each against FCOS's full prediction. The
second is the floor of the first: no post-processing speed-up goes below it, since the LWSIS network has CondInst's
controller and mask branch on top of the FCOS network; the note gives both networks' multiply-adds.
"""

from __future__ import annotations

import torch

from zoo.profiling import count_macs, interleaved, peer_row

LWSIS_PREDICT_SIZE = "r50"  # a name of zoo.models.lwsis.sizes.SIZES, or a dict of CondInst's arguments

LWSIS_PREDICT_HW = (384, 640)


def lwsis_predict_times(
    size: str | dict = LWSIS_PREDICT_SIZE, hw=LWSIS_PREDICT_HW, reps: int = 3, seed: int = 0, macs: bool = True
) -> dict:
    """Median seconds of LWSIS's full prediction, its network alone and torchvision FCOS R-50's full prediction on
    one random ``hw`` image, interleaved ``reps`` times (after one untimed round), in the current thread count; the
    detections each kept and (``macs``) the networks' multiply-adds."""
    from torchvision.models.detection import fcos_resnet50_fpn

    from zoo.models.lwsis.model import CondInst
    from zoo.models.lwsis.sizes import SIZES

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    lwsis = CondInst(**(SIZES[size] if isinstance(size, str) else size)).eval()
    fcos = fcos_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=lwsis.num_classes,
        min_size=hw[0],
        max_size=hw[1],
        score_thresh=0.05,
    ).eval()
    image = torch.rand(1, 3, *hw, generator=g) * 255  # LWSIS: RGB 0..255
    image01 = [image[0] / 255]  # torchvision: a list of RGB 0..1 images
    runs = {"lwsis": lambda: lwsis.predict(image), "lwsis_network": lambda: lwsis(image), "fcos": lambda: fcos(image01)}
    with torch.inference_mode():
        kept = {"lwsis": len(runs["lwsis"]()[0]["boxes"]), "fcos": len(runs["fcos"]()[0]["boxes"])}
        med = interleaved(runs, reps)
    out = {
        "threads": torch.get_num_threads(),
        "size": size if isinstance(size, str) else "custom",
        "hw": tuple(hw),
        "repeats": reps,
        "median_s": med,
        "detections": kept,
    }
    if macs:
        out["gmacs"] = {"lwsis": count_macs(lwsis, image) / 1e9, "fcos": count_macs(fcos, image01) / 1e9}
    return out


def lwsis_predict_rows(reps: int) -> list[dict]:
    """The two ``lwsis-predict`` rows (see the module docstring)."""
    r = lwsis_predict_times(LWSIS_PREDICT_SIZE, LWSIS_PREDICT_HW, reps=reps)
    med, kept, (h, w) = r["median_s"], r["detections"], r["hw"]
    peer = "torchvision FCOS R-50 full prediction"
    work = f"LWSIS {r['size']} at {h}x{w}"
    post = (med["lwsis"] - med["lwsis_network"]) * 1e3
    note = f"{kept['lwsis']} masks; FCOS kept {kept['fcos']} boxes; LWSIS post-processing {post:.0f} ms"
    floor = "the full row's floor (network only, no post-processing)"
    if "gmacs" in r:
        floor += f"; {r['gmacs']['lwsis']:.1f} vs {r['gmacs']['fcos']:.1f} GMACs"
    return [
        peer_row("lwsis-predict", f"{work}, full prediction", med["lwsis"], peer, med["fcos"], note),
        peer_row("lwsis-predict", f"{work}, network only", med["lwsis_network"], peer, med["fcos"], floor),
    ]
