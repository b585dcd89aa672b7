"""Zero-shot classification for CLIP-style models: class names x prompt templates -> a text classifier.

Method-independent (a data module names the class names and templates of its evaluation data; a CLIP-style module
builds the classifier from them), so both ``data_modules/image_text.py`` and ``zoo.models.aclip`` import it from here.

The classifier is open_clip's ``build_zero_shot_classifier`` (each class: the mean of its L2-normalised prompt
embeddings, re-normalised; CLIP's protocol) run on any object with ``encode_text(tokens, normalize=True)``; image
logits are ``normalize(image) @ W``. ImageNet's class names and the prompt templates come from open_clip
(``open_clip.zero_shot_metadata``); configs name them:

- ``"simple"`` (also ``"aclip"``): open_clip's 7 ``SIMPLE_IMAGENET_TEMPLATES`` ("itap of a {}.", "a bad photo of the
  {}.", "a origami {}.", "a photo of the large {}.", "a {} in a video game.", "art of the {}.", "a photo of the small
  {}."), the ``imagenet`` key of A-CLIP's release ``templates.json``, which ``microsoft/A-CLIP:main.py``'s
  ``validate_zeroshot`` used for that paper's ImageNet numbers;
- ``"openai"``: the 80 OpenAI ImageNet templates (CLIP's protocol, Radford et al. 2021);
- ``"imagenet"`` (class names): open_clip's ``IMAGENET_CLASSNAMES``.

Prompts are tokenised by the caller's tokenizer (open_clip's cuts a long text at the context length and keeps the end
token in the last slot); the 7 templates with ImageNet's names are far below 77 tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.errors import UserError


def resolve_classnames(classnames: Sequence[str] | str | None) -> list[str] | None:
    """Class names by name (``"imagenet"``) or as given (one per label index); ``None`` stays ``None``."""
    if classnames is None:
        return None
    if isinstance(classnames, str):
        if classnames.lower() in ("imagenet", "imagenet-1k", "imagenet1k"):
            from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

            return list(IMAGENET_CLASSNAMES)
        raise UserError(f"classnames={classnames!r}: give a list of class names or 'imagenet'")
    names = [str(c) for c in classnames]
    if not names or any(not n.strip() for n in names):
        raise UserError("classnames: every class needs a non-empty name (one per label index)")
    return names


def resolve_templates(templates: Sequence[str] | str | None) -> list[str]:
    """Prompt templates by name (see the module docstring) or as given; ``None`` is ``"openai"``."""
    if templates is None or (isinstance(templates, str) and templates.lower() == "openai"):
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

        return [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]
    if isinstance(templates, str) and templates.lower() in ("simple", "aclip"):
        from open_clip.zero_shot_metadata import SIMPLE_IMAGENET_TEMPLATES

        return [t("{}") for t in SIMPLE_IMAGENET_TEMPLATES]
    if isinstance(templates, str):
        templates = [templates]
    out = [str(t) for t in templates]
    bad = [t for t in out if "{}" not in t]
    if bad or not out:
        raise UserError(
            f"templates {bad or out}: every prompt template needs a '{{}}' for the class name, e.g. "
            "'a photo of a {}.' (or templates: simple / aclip / openai)"
        )
    return out


@torch.no_grad()
def zero_shot_weights(
    text_model, tokenizer, classnames: Sequence[str], templates: Sequence[str], device: torch.device | str = "cpu"
) -> Tensor:
    """(D, C) classifier: column c = normalised mean of the normalised embeddings of class c's prompts."""
    from open_clip.zero_shot_classifier import build_zero_shot_classifier

    return build_zero_shot_classifier(
        text_model, tokenizer, list(classnames), list(templates), num_classes_per_batch=10, device=device
    )


def zero_shot_logits(image_embeds: Tensor, weights: Tensor) -> Tensor:
    """(B, C) cosine similarities of the images to the class embeddings."""
    return F.normalize(image_embeds.float(), dim=-1) @ weights.float()
