"""TinyMIM's sizes, stated once (plain data: the registry reads them without importing torch; model.py and module.py
build from them).

Ren et al., "TinyMIM: An Empirical Study of Distilling MIM Pre-trained Models" (CVPR 2023, arXiv 2301.01296), §4.1 and
Table 1 (ViT-T/S/B students); official code OliverRensu/TinyMIM (``models_tinymim.py`` ``tinymim_vit_*_patch16``,
``models_vit.py`` ``vit_*_patch16``, ``models_teacher.py``; README table and commands). Every network is a ViT/16 at
224² (``_VIT16``).

- :data:`SIZES` (``DEFAULT``): the distilled students, keyword arguments of
  :class:`~zoo.models.tinymim.model.TinyMIMViT` for :class:`~zoo.models.tinymim.module.TinyMIMDistillModule`. The
  last block has the teacher's head count (relations are compared per head): 6 -> 12 for T/S (ViT-B teacher),
  12 -> 16 for B (ViT-L teacher); drop path 0.1 (``main_pretrain.py``'s default, none on the last block).
- :data:`FINETUNE_SIZES` (``FINETUNE_DEFAULT``): the ImageNet-1k classifiers of
  :class:`~zoo.models.tinymim.module.ViTFinetuneModule`; ``kind`` picks the network (``"vit"``:
  :class:`~zoo.models.tinymim.model.TinyMIMViT` with MAE's global pool + fc_norm head and the standard head counts
  T 3 / S 6 / B 12; ``"star"``: :class:`~zoo.models.tinymim.model.TinyMIMStarViT`, TinyMIM*-T with 12 heads, a
  distillation token and a 192 -> 1280 neck), the rest are its keyword arguments; drop path 0.2 (the README's
  fine-tuning command for B; the T/S values were not published).
- :data:`TEACHERS`: the MAE encoders used as teachers, and :data:`TEACHER_OF`: each student's teacher and the
  (1-based) teacher block whose relations it learns.
- :data:`MAE_SIZES` (``MAE_DEFAULT``): those teachers' own masked-autoencoder pre-training, keyword arguments of
  :class:`~zoo.models.tinymim.module.MAEPretrainModule` (the encoder's plus its decoder's): MAE's
  ``mae_vit_{base,large}_patch16_dec512d8b`` (facebookresearch/mae ``models_mae.py``: decoder width 512, 8 blocks,
  16 heads).
"""

_VIT16 = dict(img_size=224, patch_size=16)

SIZES = {
    "tiny": dict(**_VIT16, embed_dim=192, depth=12, num_heads=6, last_heads=12, drop_path_rate=0.1),
    "small": dict(**_VIT16, embed_dim=384, depth=12, num_heads=6, last_heads=12, drop_path_rate=0.1),
    "base": dict(**_VIT16, embed_dim=768, depth=12, num_heads=12, last_heads=16, drop_path_rate=0.1),
}
DEFAULT = "base"

_FT = dict(kind="vit", **_VIT16, depth=12, global_pool="avg", drop_path_rate=0.2)
FINETUNE_SIZES = {
    "tiny": dict(**_FT, embed_dim=192, num_heads=3),
    "small": dict(**_FT, embed_dim=384, num_heads=6),
    "base": dict(**_FT, embed_dim=768, num_heads=12),
    "tiny-star": dict(kind="star", **_VIT16, embed_dim=192, depth=12, num_heads=12, neck_dim=1280, drop_path_rate=0.2),
}
FINETUNE_DEFAULT = "base"

TEACHERS = {
    "mae_vit_base": dict(embed_dim=768, depth=12, num_heads=12),
    "mae_vit_large": dict(embed_dim=1024, depth=24, num_heads=16),
}
TEACHER_OF = {"tiny": ("mae_vit_base", 12), "small": ("mae_vit_base", 12), "base": ("mae_vit_large", 18)}

_MAE_DECODER = dict(decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16)
MAE_SIZES = {name: dict(**_VIT16, **enc, **_MAE_DECODER) for name, enc in TEACHERS.items()}
MAE_DEFAULT = "mae_vit_base"
