"""A-CLIP's sizes, stated once (plain data: the registry reads them without importing torch; model.py builds from them).

Official code ``microsoft/A-CLIP:models.py`` (``ACLIP_VITB16``, ``ACLIP_VITL16``, ``ACLIP_VITS16``): every size shares
the CLIP text transformer (width 512, 12 layers, 8 heads, context 77, CLIP BPE vocabulary 49,408) and a 512-d joint
space; only the image tower changes. ViT-S/16 has **12 heads** in the code (timm's ViT-S has 6).
"""

VISION = {
    "b16": dict(vision_width=768, vision_depth=12, vision_heads=12),
    "l16": dict(vision_width=1024, vision_depth=24, vision_heads=16),
    "s16": dict(vision_width=384, vision_depth=12, vision_heads=12),
}
TEXT = dict(embed_dim=512, context_length=77, vocab_size=49408, text_width=512, text_heads=8, text_layers=12)
HEADS = dict(ssl_mlp_dim=4096, ssl_emb_dim=256, byol_hidden_dim=4096, byol_dim=256)
