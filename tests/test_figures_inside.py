"""Figure builders of issue 12, without a browser: sizes from the run, escaped token text, the selections pages
listen to, thumbnails shaded per head, cut-offs drawn."""
import json

import numpy as np
import torch
from altair.vegalite.v6.schema.core import Root

from explorer.figures.attention import contrast_normalise
from explorer.figures.attention_views import PICK_CELL, PICK_QUERY, clickable_heatmap, line_view
from explorer.figures.inside import logits_figure, pipeline_figure, strips
from gpt.config import GPTConfig
from gpt.interp.forward import sampling_view


def spec(built: dict) -> dict:
    """A builder's Vega-Lite spec, checked against Vega-Lite's schema (the app skips Altair's check, for speed),
    with its rows as records, as Vega reads them."""
    Root.validate({k: v for k, v in built.items() if k != "datasets"})
    return {**built, "datasets": {name: frame.to_dict("records") for name, frame in built["datasets"].items()}}


def test_pipeline_names_the_runs_sizes():
    fig = pipeline_figure(GPTConfig(n_layer=12, n_head=12, n_embd=768, vocab_size=50257), layer=11, T=64)
    text = " ".join(a.text for a in fig.layout.annotations)
    assert "attention 12×64" in text and "MLP 768→3072→768" in text and "(64, 50257)" in text
    assert "Block 11" in text and "7 more" in text  # 12 blocks drawn as 0..3, a gap, 11


def test_line_view_and_heatmap_carry_their_selections_and_keep_tokens_as_text():
    T = 8
    pattern = np.tril(np.ones((2, T, T))) / np.arange(1, T + 1)[:, None]
    labels = ["<b>"] + list("abcdefg")
    lines = spec(line_view(pattern, labels, [0, 1], position=3))
    params = {p["name"] for p in lines["params"]}
    assert {PICK_QUERY, "hover_token"} <= params
    dumped = json.dumps(lines)
    # Vega draws text marks and escapes its tooltips itself: the token travels as typed (escaping it showed &lt;)
    assert '"<b>"' in dumped and "&lt;" not in dumped
    rows = next(v for v in lines["datasets"].values() if v and "weight" in v[0])
    assert min(r["weight"] for r in rows) >= 0.05  # faint lines dropped
    heat = spec(clickable_heatmap(pattern[0], labels, position=2))
    assert PICK_CELL in json.dumps(heat["params"]) and heat["width"] == heat["height"] == 22 * T


def test_thumbnails_are_shaded_per_head():
    faint = np.tril(np.full((1, 2, 4, 4), 0.1))
    faint[0, 1] *= 5
    out = contrast_normalise(faint)
    assert np.isclose(out[0, 0, 2, 1], 1.0) and np.isclose(out[0, 1, 2, 1], 1.0)


def test_logits_figure_marks_the_cut_and_the_pick():
    view = sampling_view(torch.tensor([3.0, 2.0, 1.0, 0.0]), top_k=2, seed=0)
    fig = logits_figure(view, ["a", "b", "<d>", "<b>"])
    assert len(fig.layout.shapes) == 1 and fig.layout.shapes[0].x0 == 1.5
    # plotly would draw "<b>" as bold: escaped (plotly shows the entity as "<"); "<d>" is no plotly tag: as typed
    assert list(fig.data[0].x[-2:]) == ["<d>", "&lt;b>"]
    assert strips([("x", torch.tensor([1.0, -2.0]))]).data[0].zmin == -2.0
