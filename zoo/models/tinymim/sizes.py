"""TinyMIM's sizes, stated once (plain data: the registry reads them without importing torch; model.py builds from
them). Official code OliverRensu/TinyMIM (models_mae / models_vit; README table); TinyMIM §4.1."""

# distilled students (pre-training layout): the last block has the teacher's head count (relations are compared per
# head), 6 -> 12 for T/S (ViT-B teacher), 12 -> 16 for B (ViT-L teacher)
STUDENTS = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=6, last_heads=12),
    "small": dict(embed_dim=384, depth=12, num_heads=6, last_heads=12),
    "base": dict(embed_dim=768, depth=12, num_heads=12, last_heads=16),
}
# MAE encoders used as teachers
TEACHERS = {
    "mae_vit_base": dict(embed_dim=768, depth=12, num_heads=12),
    "mae_vit_large": dict(embed_dim=1024, depth=24, num_heads=16),
}
# each student's teacher and the teacher block whose relations it learns
TEACHER_OF = {"tiny": ("mae_vit_base", 12), "small": ("mae_vit_base", 12), "base": ("mae_vit_large", 18)}
# standard ViTs fine-tuned on ImageNet-1k (T has 3 heads as DeiT-T)
FINETUNED = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "base": dict(embed_dim=768, depth=12, num_heads=12),
}
