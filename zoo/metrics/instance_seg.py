"""COCO mask AP for instance segmentation (LWSIS on nuInsSeg reports COCO mask AP).

:class:`MaskAP` is torchmetrics' ``MeanAveragePrecision(iou_type="segm")`` with the pycocotools backend (masks are
encoded to COCO RLE and scored by ``pycocotools.cocoeval.COCOeval``); :func:`coco_mask_ap` runs pycocotools directly
on the same inputs, the reference the tests compare it with.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.detection import MeanAveragePrecision

__all__ = ["MaskAP", "coco_mask_ap"]


class MaskAP(MeanAveragePrecision):
    """COCO mask AP (AP@[.5:.95], AP50, AP75, small/medium/large); ``update(preds, targets)`` with per-image dicts:
    preds ``masks [n, H, W]`` bool, ``scores [n]``, ``labels [n]``; targets ``masks [g, H, W]`` bool, ``labels [g]``."""

    def __init__(self, **kwargs):
        kwargs.setdefault("backend", "pycocotools")
        super().__init__(iou_type="segm", **kwargs)


def coco_mask_ap(preds: list[dict], targets: list[dict]) -> float:
    """AP@[.5:.95] of the same inputs as :class:`MaskAP` straight through pycocotools (COCO RLE + COCOeval)."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def rle(m):
        r = mask_utils.encode(np.asfortranarray(np.asarray(m, dtype=np.uint8)))
        return r

    images, anns, dets, cats = [], [], [], set()
    for i, (p, t) in enumerate(zip(preds, targets)):
        h, w = t["masks"].shape[-2:]
        images.append({"id": i, "height": int(h), "width": int(w)})
        for m, lab in zip(t["masks"], t["labels"]):
            r = rle(torch.as_tensor(m).cpu().numpy())
            cats.add(int(lab))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": int(lab),
                    "segmentation": r,
                    "area": float(mask_utils.area(r)),
                    "bbox": list(mask_utils.toBbox(r)),
                    "iscrowd": 0,
                }
            )
        for m, s, lab in zip(p["masks"], p["scores"], p["labels"]):
            r = rle(torch.as_tensor(m).cpu().numpy())
            cats.add(int(lab))
            dets.append({"image_id": i, "category_id": int(lab), "segmentation": r, "score": float(s)})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c} for c in sorted(cats)]}
    gt.createIndex()
    if not dets:
        return -1.0
    dt = gt.loadRes(dets)
    ev = COCOeval(gt, dt, iouType="segm")
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])
