"""explorer/figures: figure builders checked on their figure data, without a browser."""

import numpy as np
import pytest

from explorer.figures import attention, base, embeddings, tokens, training


def test_loss_curves_one_pair_per_run_and_skips_missing_values():
    rows = [{"step": 0, "val_loss": 4.0, "eval_train_loss": 4.1}, {"step": 10, "train_loss": 3.5},
            {"step": 20, "train_loss": 3.0}, {"step": 20, "val_loss": 3.2}, {"step": 30, "train_loss": float("nan")}]
    fig = training.loss_curves({"a": rows, "b": rows[:2]})
    names = [t.name for t in fig.data]
    assert names == ["a train", "a val", "b train", "b val"]
    assert list(fig.data[0].x) == [10, 20] and list(fig.data[1].y) == [4.0, 3.2]
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color
    single = training.loss_curves({"only": rows})
    assert [t.name for t in single.data] == ["train", "val"]


def test_metric_curve_prefers_training_rows():
    rows = [{"step": 0, "lr": 0.0, "val_loss": 1}, {"step": 10, "lr": 0.5, "train_loss": 1},
            {"step": 20, "lr": 1.0, "train_loss": 1}]
    fig = training.metric_curve(rows, "lr", "Learning rate", "lr")
    assert list(fig.data[0].x) == [10, 20]


def test_attention_heatmap_masks_the_future_and_labels_tokens():
    T = 4
    pattern = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]
    fig = attention.attention_heatmap(pattern, ["a", "b", "<s>", "<"], "L0 H0")
    z = np.array(fig.data[0].z, dtype=float)
    assert np.isnan(z[0, 1]) and np.isnan(z[2, 3]) and z[3, 0] == 0.25
    # "<s>" is a plotly tag (strike-through): its "<" is escaped, and plotly shows the entity as the character; a
    # lone "<" is drawn as itself, so it stays as typed (no &lt; where none is needed)
    assert list(fig.layout.xaxis.ticktext) == ["0:a", "1:b", "2:&lt;s>", "3:<"]
    assert fig.layout.plot_bgcolor == base.MASK_COLOR
    assert fig.layout.yaxis.autorange == "reversed"


def test_attention_overview_has_one_thumbnail_per_head():
    pooled = np.random.default_rng(0).random((2, 3, 5, 5))
    fig = attention.attention_overview(pooled, selected=(1, 2))
    assert len(fig.data) == 1  # one mosaic: tiles of 5x5 with a blank row/column between them
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (2 * 6 - 1, 3 * 6 - 1)
    tile = z[6:11, 12:17]  # layer 1, head 2
    assert np.allclose(np.tril(tile), np.tril(pooled[1, 2]), atol=1e-3)
    assert np.isnan(tile[0, 4]) and np.isnan(z[5]).all()  # causal mask and the gap
    assert list(fig.layout.xaxis.ticktext) == ["H0", "H1", "H2"] and list(fig.layout.yaxis.ticktext) == ["L0", "L1"]
    frame = fig.layout.shapes[0]  # the selected head's frame
    assert (frame.x0, frame.y0) == (12 - 0.5, 6 - 0.5)


def test_head_score_grid_text_and_shape():
    fig = attention.head_grid(np.array([[0.1, 0.9]]), "previous-token")
    assert list(fig.data[0].x) == ["H0", "H1"] and list(fig.data[0].text[0]) == ["0.10", "0.90"]


def test_embedding_scatter_2d_and_3d():
    pts = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [2.0, 2.0, 1.0]])
    fig2 = embeddings.embedding_scatter(pts[:, :2], ["a", "b", "c"], [0, 1, 2], np.array([0.6, 0.3]), highlight=[1])
    assert fig2.data[0].type == "scatter" and list(fig2.data[0].text) == ["a", "b", "c"]
    assert fig2.data[0].marker.color[1] != fig2.data[0].marker.color[0]
    assert "60%" in fig2.layout.xaxis.title.text
    fig3 = embeddings.embedding_scatter(pts, ["a", "b", "c"], [0, 1, 2], np.array([0.6, 0.3, 0.1]))
    assert fig3.data[0].type == "scatter3d"


def test_token_bars_orders_and_marks_the_chosen_token():
    fig = tokens.token_bars(["a", "·", "↵"], [0.5, 0.3, 0.2], "next", chosen=1)   # display text: space, newline
    bar = fig.data[0]
    assert list(bar.x) == [0.5, 0.3, 0.2] and list(bar.y) == ["a", "·", "↵"]   # as given: no repr quotes
    assert bar.marker.color[1] != bar.marker.color[0]
    assert list(bar.text) == ["50.0%", "30.0%", "20.0%"]


def test_matrix_heatmap_is_symmetric_around_zero():
    fig = embeddings.matrix_heatmap(np.array([[0.5, -2.0], [1.0, 0.0]]), "t", "x", "y")
    assert fig.data[0].zmin == -2.0 and fig.data[0].zmax == 2.0


def test_smoothing_is_tensorboards_debiased_moving_average():
    assert training.smooth([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])  # debiased: no pull to 0
    ys = training.smooth([0.0, 10.0], 0.5)
    assert ys[0] == 0.0 and ys[1] == pytest.approx(5.0 / 0.75)
    fig = training.loss_curves({"r": [{"step": 1, "train_loss": 2.0}, {"step": 2, "train_loss": 4.0}]}, smoothing=0.5)
    assert list(fig.data[0].y) == pytest.approx([2.0, 2.5 / 0.75])
    with pytest.raises(ValueError):
        training.smooth([1.0], 1.0)


def test_difference_heatmap_is_centred_on_zero_and_grids_share_the_attention_colours():
    fig = attention.attention_heatmap(np.array([[0.2, 0.0], [-0.5, 0.1]]), ["a", "b"], "diff", diverging=True)
    assert fig.data[0].zmid == 0 and fig.data[0].zmin == -0.5 and fig.data[0].zmax == 0.5
    grid = attention.head_grid([[0.2, 0.4]], "scores")
    overview = attention.attention_overview(np.zeros((1, 2, 3, 3)))
    assert grid.data[0].colorscale == overview.data[0].colorscale
    assert list(grid.data[0].y) == ["L0"]
    detector = attention.detector_heatmaps(np.zeros((4, 1, 2)))
    assert [a.text for a in detector.layout.annotations][:2] == ["previous-token", "first-token (sink)"]
