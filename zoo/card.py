"""The model card: a huggingface_hub ``ModelCard`` with YAML metadata (library, tags, datasets, licence, ``model-index``
results, the paper's and ours labelled apart) and a text that says what the weights are, how to use and train the
model, its preprocessing, results, demos and limitations.

A card describes what it is written for: ``zoo card NAME`` the registry entry; an export the trained module, whose
preprocessing (``config.json``'s ``preprocess``) follows the module's own ``data_config()`` (see
:func:`zoo.export.preprocess_of`).
"""

from __future__ import annotations

from zoo import registry

__all__ = ["make_card", "card_body"]

_HUB_LICENSES = {"apache-2.0", "mit", "bsd-3-clause", "cc-by-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0", "other"}


def make_card(entry: registry.Entry | None, cfg: dict | None = None, our_metrics=None):
    """The model card: huggingface_hub ModelCard with YAML metadata and ``model-index`` (paper and ours).

    ``cfg``: the export's config.json; its ``preprocess`` (the trained module's) replaces the entry's on the card."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    cfg = cfg or {}
    if entry is None:
        data = ModelCardData(library_name="zoo", tags=["zoo", "pytorch-lightning"])
        pre = cfg.get("preprocess")
        body = (
            f"# {cfg.get('module', 'zoo model')}\n\nA zoo model exported from a training run.\n\n"
            f"## Usage\n\n```python\nimport zoo\nmodel = zoo.load('local-dir:PATH')\n```\n"
            + (f"\nPreprocessing:\n{_preprocess_text(pre)}\n" if pre else "")
        )
        return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")

    ours = tuple(our_metrics) if our_metrics is not None else entry.our_metrics
    results = []
    for source, metrics in (("paper", entry.paper_metrics), ("zoo (ours)", ours)):
        for m in metrics:
            label = m.name or m.metric
            results.append(
                EvalResult(
                    task_type=m.task,
                    dataset_type=m.dataset,
                    dataset_name=m.dataset_name,
                    dataset_split=m.split,
                    metric_type=m.metric,
                    metric_value=m.value,
                    metric_name=f"{label} ({'paper' if source == 'paper' else 'ours'})",
                    # huggingface_hub requires a source_url with every source_name; our runs have no public URL,
                    # so our rows carry "(ours)" in metric_name and their protocol in the card's results table.
                    source_name="paper" if source == "paper" and entry.paper.url else None,
                    source_url=entry.paper.url if source == "paper" and entry.paper.url else None,
                )
            )
    data = ModelCardData(
        library_name="zoo",
        license=_hub_license(entry.license),
        tags=["zoo", "pytorch-lightning", entry.method, *entry.tags],
        datasets=list(entry.datasets) or None,
        pipeline_tag=entry.pipeline_tag,
        model_name=entry.name,
        eval_results=results or None,
    )
    if data.license == "other":
        data.license_name = entry.license.lower().replace(" ", "-")
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{card_body(entry, ours, cfg.get('preprocess'))}")


def _hub_license(lic: str) -> str:
    lic = lic.lower()
    return lic if lic in _HUB_LICENSES else "other"


def _metric_table(metrics) -> str:
    if not metrics:
        return "_none yet_\n"
    rows = ["| dataset | split | metric | value | protocol |", "|---|---|---|---|---|"]
    for m in metrics:
        rows.append(f"| {m.dataset_name} | {m.split} | {m.name or m.metric} | {m.value:g} | {m.protocol or ''} |")
    return "\n".join(rows) + "\n"


def _preprocess_text(preprocess: dict | None) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in (preprocess or {}).items()) or "- none"


def _weights_text(entry: registry.Entry) -> str:
    """The card's weights paragraph: says which of hub / official / pending / - the entry is, truthfully."""
    w = entry.weights
    if w == "hub":
        return f"Weights (`hub`): `{entry.hub_repo}` at commit `{entry.revision}`."
    if w == "official":
        return (
            f"Weights (`official`): the authors' release <{entry.official_url}>"
            + (f" (`{entry.official_hash}`)" if entry.official_hash else "")
            + ". `zoo.load` downloads it once, reads it as plain tensors (`torch.load(weights_only=True)`), converts "
            "it to zoo's layout and loads it strictly, then caches the converted safetensors under `$ZOO_CACHE` "
            "(default `~/.cache/zoo`); later loads need neither the network nor a conversion. Offline "
            "(`HF_HUB_OFFLINE=1`), save the file where the error message says and load again."
        )
    if w == "pending":
        return f"Weights (`pending`): not published yet. Produce them here: {entry.weights_howto}"
    return "Weights (`-`): none published; this entry builds the architecture (train it with the config below)."


def card_body(entry: registry.Entry, ours, preprocess: dict | None = None) -> str:
    """The card's text for ``entry``; ``preprocess``: the exported module's preprocessing (default: the entry's)."""
    p = entry.paper
    links = " · ".join(x for x in (f"[paper]({p.url})" if p.url else "", f"[code]({p.code})" if p.code else "") if x)
    params = f"{entry.params:,}" if entry.params else "n/a"
    flops = f"{entry.flops / 1e6:.0f}M" if entry.flops else "n/a"
    pre = _preprocess_text(entry.preprocess if preprocess is None else preprocess)
    weights = _weights_text(entry)
    usage = (
        f'model = zoo.load("{entry.name}")      # LightningModule in eval mode, with the weights above'
        if entry.pretrained
        else f'model = zoo.create("{entry.name}")    # the architecture, randomly initialised (no weights yet)'
    )
    cfg = entry.config or f"configs/{entry.method}.yaml"
    cite = f"\n## Citation\n\n```bibtex\n{p.citation.strip()}\n```\n" if p.citation else ""
    return f"""# {entry.name}

{entry.description or p.title}

From *{p.title}*{f" ({p.venue})" if p.venue else ""}. {links}

| | |
|---|---|
| parameters | {params} |
| multiply-adds | {flops} |
| licence | {entry.license} |

{weights}

## Usage

```python
import zoo

{usage}
net = model.model                      # the plain nn.Module
```

Train or fine-tune with the paper's recipe:

```bash
zoo fit --config {cfg}
```

Preprocessing:
{pre}

## Results

Reported in the paper:

{_metric_table(entry.paper_metrics)}
Measured by zoo (ours):

{_metric_table(ours)}{_demo_text(entry)}{_claim_text(entry)}
## Training recipe

{entry.recipe or "See the config file."}

## Limitations

{entry.limitations or "Numbers labelled 'paper' are the authors'; only those labelled 'ours' were measured by zoo."}
{cite}"""


def _demo_text(entry: registry.Entry) -> str:
    """The method's demos in miniature (a CPU, minutes), read from results/demo/<stem>.csv: mean ± std over seeds."""
    from zoo.results import demo_configs_of, demo_table

    demos = demo_configs_of(entry.module.split(".")[2])  # the package (mmc_coref), not the name's prefix (mmc)
    rows = demo_table(stems=[d.stem for d in demos]) if demos else []
    if not demos:
        return ""
    lines = [
        f"- `{cfg}` ({variant}, {proto}; seeds {seeds}): {metrics}" for cfg, variant, proto, seeds, metrics in rows
    ]
    runs = ", ".join(f"`zoo fit --config configs/demo/{d.name}`" for d in demos)
    return (
        "\nDemos on a CPU (not benchmarks; "
        + runs
        + "):\n\n"
        + (
            "\n".join(lines)
            if lines
            else "- not measured yet (`zoo reproduce --config configs/demo/<demo>.yaml --seeds 0-2 --record`)"
        )
        + "\n"
    )


def _claim_text(entry: registry.Entry) -> str:
    """The section 'Claim in miniature': the method's ``CLAIM`` (``zoo/models/<method>/__init__.py``), the paper's
    number for it and the miniature measured from ``results/demo/*.csv`` (or 'not yet measured' and the command)."""
    from zoo.results import claim_details, claim_line, claim_of, measure_claim

    mod = entry.module.split(".")
    c = claim_of(mod[2] if mod[:2] == ["zoo", "models"] and len(mod) > 2 else entry.method)  # the method's package
    if c is None:
        return ""
    r = measure_claim(c)
    verdicts = {
        "shows": "The miniature shows the claim's direction.",
        "shows, within the seed spread": "The miniature shows the claim's direction, but the gap is within the "
        "spread over seeds.",
        "does not show at this scale": "**The miniature does not show the claim at this scale.**",
        "does not show: degenerate runs": "**The miniature does not show the claim: the first arm leads, but some "
        "of its runs are degenerate (their metric says nothing; see the degenerate runs below).**",
        "not yet measured": "Not yet measured: the lines below say how each missing arm is measured.",
        "no miniature": "",
    }
    lines = [
        "\n## Claim in miniature\n",
        f"The paper's claim: {c.claim}",
        "",
        f"Paper: {c.paper or 'no number for this claim in the specs zoo was built from.'}",
        "",
    ]
    for x in (r, *r.also):  # the claim's own miniature, then the same claim on further data (Claim.also)
        if lines[-1] != "":
            lines.append("")
        verdict = verdicts[x.verdict]
        lines += [f"{claim_line(x)[0].upper()}{claim_line(x)[1:]}." + (f" {verdict}" if verdict else ""), ""]
        if x.claim.design:
            lines += [f"Design: {x.claim.design}", ""]
        lines += [f"- {d}" for d in claim_details(x)]
    return "\n".join(lines) + ("\n" if lines[-1] != "" else "")
