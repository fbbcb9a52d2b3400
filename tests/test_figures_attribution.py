"""The attribution figure builders (explorer/figures/attribution.py), without a browser: what they draw and that
token text reaches plotly escaped."""
import torch

from explorer.figures.attribution import dla_waterfall, head_heatmap, mlp_patching_bars, residual_patching_heatmap


def test_waterfall_shows_the_largest_parts_then_the_rest_then_the_total():
    parts = {"embed": 0.5, "L0H0": -2.0, "L0H1": 0.1, "L0.mlp": 3.0, "ln_f.bias": 0.05}
    fig = dla_waterfall(parts, sum(parts.values()), k=2, title="<b>x</b>")
    bars = fig.data[0]
    assert list(bars.x) == ["L0.mlp", "L0H0", "3 others", "total"]
    assert list(bars.measure) == ["relative", "relative", "relative", "total"]
    assert bars.y[2] == sum([0.5, 0.1, 0.05]) and bars.y[-1] == sum(parts.values())
    assert fig.layout.title.text == "&lt;b>x&lt;/b>"   # plotly's tags escaped: it shows "<b>x</b>", not bold


def test_grids_label_layers_heads_and_tokens_escaped():
    heads = head_heatmap(torch.tensor([[0.5, -0.25], [0.0, 1.0]]))
    assert list(heads.data[0].x) == ["H0", "H1"] and list(heads.data[0].y) == ["L0", "L1"]
    assert heads.data[0].zmid == 0
    tokens = ["<", "<i>", "b→c"]   # a lone "<" is drawn as itself; "<i>" would be italics
    resid = residual_patching_heatmap(torch.zeros(3, 3), tokens, ["embeddings", "after block 0", "after block 1"])
    assert list(resid.layout.xaxis.ticktext) == ["<", "&lt;i>", "b→c"] and list(resid.layout.xaxis.tickvals) == [0, 1, 2]
    assert resid.data[0].customdata[0][1] == "&lt;i>" and resid.data[0].zmin == -1 and resid.data[0].zmax == 1
    bars = mlp_patching_bars([0.9, -0.1])
    assert list(bars.data[0].x) == ["L0.mlp", "L1.mlp"] and list(bars.data[0].text) == ["0.90", "-0.10"]
