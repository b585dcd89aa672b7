"""A-CLIP's zero-shot evaluation: the method-independent pieces live in :mod:`zoo.metrics.zeroshot` (re-exported here
for existing imports). The release evaluates with the 7 templates of its ``templates.json`` (``"aclip"``)."""

from zoo.metrics.zeroshot import resolve_classnames, resolve_templates, zero_shot_logits, zero_shot_weights

__all__ = ["resolve_classnames", "resolve_templates", "zero_shot_logits", "zero_shot_weights"]
