"""explorer/charts.py: figure builders checked on their figure data, without a browser."""

import numpy as np

from explorer import charts


def test_loss_curves_one_pair_per_run_and_skips_missing_values():
    rows = [{"step": 0, "val_loss": 4.0, "eval_train_loss": 4.1}, {"step": 10, "train_loss": 3.5},
            {"step": 20, "train_loss": 3.0}, {"step": 20, "val_loss": 3.2}, {"step": 30, "train_loss": float("nan")}]
    fig = charts.loss_curves({"a": rows, "b": rows[:2]})
    names = [t.name for t in fig.data]
    assert names == ["a train", "a val", "b train", "b val"]
    assert list(fig.data[0].x) == [10, 20] and list(fig.data[1].y) == [4.0, 3.2]
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color
    single = charts.loss_curves({"only": rows})
    assert [t.name for t in single.data] == ["train", "val"]


def test_metric_curve_prefers_training_rows():
    rows = [{"step": 0, "lr": 0.0, "val_loss": 1}, {"step": 10, "lr": 0.5, "train_loss": 1},
            {"step": 20, "lr": 1.0, "train_loss": 1}]
    fig = charts.metric_curve(rows, "lr", "Learning rate", "lr")
    assert list(fig.data[0].x) == [10, 20]


def test_attention_heatmap_masks_the_future_and_labels_tokens():
    T = 4
    pattern = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]
    fig = charts.attention_heatmap(pattern, ["a", "b", "<s>", "d"], "L0 H0")
    z = np.array(fig.data[0].z, dtype=float)
    assert np.isnan(z[0, 1]) and np.isnan(z[2, 3]) and z[3, 0] == 0.25
    assert list(fig.layout.xaxis.ticktext) == ["0:a", "1:b", "2:<s>", "3:d"]
    assert fig.layout.plot_bgcolor == charts.MASK_COLOR
    assert fig.layout.yaxis.autorange == "reversed"


def test_attention_overview_has_one_thumbnail_per_head():
    pooled = np.random.default_rng(0).random((2, 3, 5, 5))
    fig = charts.attention_overview(pooled, selected=(1, 2))
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
    fig = charts.head_score_grid(np.array([[0.1, 0.9]]), "prev_token")
    assert list(fig.data[0].x) == ["H0", "H1"] and list(fig.data[0].text[0]) == ["0.10", "0.90"]


def test_embedding_scatter_2d_and_3d():
    pts = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [2.0, 2.0, 1.0]])
    fig2 = charts.embedding_scatter(pts[:, :2], ["a", "b", "c"], [0, 1, 2], np.array([0.6, 0.3]), highlight=[1])
    assert fig2.data[0].type == "scatter" and list(fig2.data[0].text) == ["a", "b", "c"]
    assert fig2.data[0].marker.color[1] != fig2.data[0].marker.color[0]
    assert "60%" in fig2.layout.xaxis.title.text
    fig3 = charts.embedding_scatter(pts, ["a", "b", "c"], [0, 1, 2], np.array([0.6, 0.3, 0.1]))
    assert fig3.data[0].type == "scatter3d"


def test_token_bars_orders_and_marks_the_chosen_token():
    fig = charts.token_bars(["a", " ", "\n"], [0.5, 0.3, 0.2], "next", chosen=1)
    bar = fig.data[0]
    assert list(bar.x) == [0.5, 0.3, 0.2] and list(bar.y) == ["'a'", "' '", "'\\n'"]
    assert bar.marker.color[1] != bar.marker.color[0]
    assert list(bar.text) == ["50.0%", "30.0%", "20.0%"]


def test_matrix_heatmap_is_symmetric_around_zero():
    fig = charts.matrix_heatmap(np.array([[0.5, -2.0], [1.0, 0.0]]), "t", "x", "y")
    assert fig.data[0].zmin == -2.0 and fig.data[0].zmax == 2.0
