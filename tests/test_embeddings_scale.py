"""The Embeddings page's pieces at a GPT-2-sized vocabulary: PCA from the covariance gives the SVD's projection, an
even sample keeps the tokens asked for, search finds tokens by their text."""
import numpy as np

from explorer.figures.embeddings import embedding_scatter
from gpt.interp.embeddings import nearest_neighbours, pca, sample_ids, search_tokens


def test_pca_of_a_tall_table_matches_the_svd():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 24)) * np.linspace(3, 0.1, 24)    # tall: the covariance path
    tall = pca(x, 3)
    centred = x - x.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:3].T
    expected *= np.sign((expected * tall.points).sum(0))       # a component's sign is a convention
    assert np.allclose(tall.points, expected, atol=1e-3)
    assert np.allclose(tall.explained, s[:3] ** 2 / (s ** 2).sum(), atol=1e-6)
    short = pca(x[:20], 3)                                      # short: the SVD path
    assert short.points.shape == (20, 3) and np.all(np.diff(short.explained) <= 0)


def test_nearest_neighbours_in_float32_agree_with_float64():
    x = np.random.default_rng(1).normal(size=(500, 16)).astype(np.float32)
    fast = nearest_neighbours(x, 7, 5, norms=np.linalg.norm(x, axis=1))
    slow = nearest_neighbours(x.astype(np.float64), 7, 5)
    assert [i for i, _ in fast] == [i for i, _ in slow]
    assert np.allclose([s for _, s in fast], [s for _, s in slow], atol=1e-5)


def test_sample_and_search():
    ids = sample_ids(50_257, 5_000, always=[50_256, 17, 17])
    assert len(ids) <= 5_002 and ids[0] == 0 and 50_256 in ids and 17 in ids and ids == sorted(set(ids))
    assert sample_ids(10, 5_000) == list(range(10))
    labels = ["the", "·the", "The", "other", "theme", "a"]
    assert search_tokens(labels, "the") == [0, 2, 4, 1, 3]      # exact, then starts with (any case), then contains
    assert search_tokens(labels, "") == [] and search_tokens(labels, "zz") == []
    assert search_tokens(labels, "t", limit=2) == [0, 2]


def test_a_big_scatter_is_webgl_with_only_the_highlighted_tokens_labelled():
    pts = np.random.default_rng(2).normal(size=(1000, 2))
    fig = embedding_scatter(pts, [f"t{i}" for i in range(1000)], list(range(1000)), np.array([0.5, 0.2]),
                            highlight=[3, 4])
    assert fig.data[0].type == "scattergl" and fig.data[0].mode == "markers" and fig.data[0].text is None
    assert list(fig.data[1].text) == ["t3", "t4"]
    small = embedding_scatter(pts[:50], [f"t{i}" for i in range(50)], list(range(50)))
    assert small.data[0].type == "scatter" and len(small.data) == 1 and small.data[0].text[0] == "t0"
