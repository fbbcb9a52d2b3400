"""A feature's label (gpt/interp/features/labels.py) as the pages show it: in markdown (chips, cards, pickers), a weak
label greyed and marked "weak"."""
from __future__ import annotations


def label_markdown(labels, feature: int) -> str:
    """The label as markdown ("" when none): the code spans stay code spans; a weak one is grey and says so."""
    if labels is None:
        return ""
    entry = labels.entry(feature)
    if entry is None:
        return ""
    text = entry["label"]
    if not labels.is_weak(feature):
        return text
    weak = f"{text} (weak)"
    return weak if "[" in text or "]" in text else f":gray[{weak}]"   # a bracket would end :gray[...] early


def score_markdown(labels, feature: int) -> str:
    """"held-out score 0.83 (F1 0.71)" with what it measures, for a card."""
    entry = labels.entry(feature) if labels is not None else None
    if entry is None:
        return ""
    weak = " — weak: the rule predicts little of where it fires" if labels.is_weak(feature) else ""
    return (f"held-out score **{entry['score']:.2f}** (F1 of firing {entry.get('f1', 0.0):.2f}){weak}")
