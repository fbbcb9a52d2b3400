"""gpt/interp attention, embeddings, next_token: attention traces, head summaries, pooling, projections, neighbours,
next-token distributions."""
import numpy as np
import pytest
import torch

from gpt import GPT, GPTConfig
from gpt.interp.attention import attention_trace, head_summary, head_table, pool_pattern
from gpt.interp.capture import InterpError
from gpt.interp.embeddings import cosine_matrix, nearest_neighbours, pca, position_embeddings, token_embeddings
from gpt.interp.next_token import next_token_distribution, top_k


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=3, n_embd=24)).eval()


def test_attention_trace_shapes_rows_sum_to_one_and_causal(model):
    trace = attention_trace(model, [1, 2, 3, 4, 5, 6])
    assert trace.patterns.shape == (2, 3, 6, 6)
    np.testing.assert_allclose(trace.patterns.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(trace.patterns, k=1) == 0)  # no query attends to a later key
    with torch.no_grad():
        fast_logits, _ = model(torch.tensor([[1, 2, 3, 4, 5, 6]]))
    np.testing.assert_allclose(trace.logits, fast_logits[0].numpy(), atol=1e-5)


def test_attention_trace_rejects_bad_prompts(model):
    with pytest.raises(InterpError, match="empty"):
        attention_trace(model, [])
    with pytest.raises(InterpError, match="block_size"):
        attention_trace(model, [1] * 17)
    bigram = GPT(GPTConfig(vocab_size=20, block_size=16, arch="bigram", n_embd=8)).eval()
    with pytest.raises(InterpError, match="bigram"):
        attention_trace(bigram, [1, 2])


def test_head_scores_on_hand_made_patterns():
    T = 5
    prev = np.zeros((T, T))
    prev[0, 0] = 1
    prev[np.arange(1, T), np.arange(T - 1)] = 1      # every query looks at the token before it
    first = np.zeros((T, T))
    first[:, 0] = 1                                   # every query looks at position 0
    uniform = np.tril(np.ones((T, T)))
    uniform /= uniform.sum(-1, keepdims=True)
    patterns = np.stack([np.stack([prev, first, uniform])])  # (1, 3, T, T)
    scores = head_summary(patterns)
    assert scores["prev_token"][0, 0] == pytest.approx(1.0)
    assert scores["entropy"][0, 0] == pytest.approx(0.0, abs=1e-6)
    assert scores["first_token"][0, 1] == pytest.approx(1.0)
    # uniform over q+1 keys: log2(q+1) bits, averaged over queries 1..T-1
    assert scores["entropy"][0, 2] == pytest.approx(np.mean(np.log2(np.arange(2, T + 1))))
    assert scores["self"][0, 2] == pytest.approx(np.mean(1 / np.arange(2, T + 1)))
    rows = head_table(patterns)
    assert [(r["layer"], r["head"]) for r in rows] == [(0, 0), (0, 1), (0, 2)]


def test_pool_pattern_keeps_row_mass_and_small_inputs():
    p = np.random.default_rng(0).random((2, 3, 10, 10))
    assert pool_pattern(p, 16) is p
    pooled = pool_pattern(p, 4)
    assert pooled.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(pooled.mean(axis=(-1, -2)), p.mean(axis=(-1, -2)), rtol=0.15)
    ones = np.ones((7, 7))
    np.testing.assert_allclose(pool_pattern(ones, 3), 1.0)


def test_next_token_distribution_and_top_k(model):
    probs = next_token_distribution(model, [3, 4, 5])
    assert probs.shape == (20,) and probs.sum() == pytest.approx(1.0, abs=1e-5)
    sharp = next_token_distribution(model, [3, 4, 5], temperature=0.1)
    assert sharp.max() > probs.max()
    best = top_k(probs, 3)
    assert [i for i, _ in best] == list(np.argsort(-probs)[:3])
    assert next_token_distribution(model, list(range(20)) * 2).shape == (20,)  # crops to block_size
    with pytest.raises(InterpError):
        next_token_distribution(model, [])


def test_embeddings_pca_neighbours_and_cosine(model):
    emb = token_embeddings(model)
    assert emb.shape == (20, 24)
    assert position_embeddings(model).shape == (16, 24)
    proj = pca(emb, 2)
    assert proj.points.shape == (20, 2)
    assert proj.explained[0] >= proj.explained[1] > 0
    line = np.outer(np.arange(6.0), [1.0, 2.0, 0.0])   # points on a line: one component explains everything
    assert pca(line, 2).explained[0] == pytest.approx(1.0)
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    assert [i for i, _ in nearest_neighbours(x, 0, k=3)] == [1, 2, 3]
    sim = cosine_matrix(x)
    assert sim[0, 3] == pytest.approx(-1.0) and sim[0, 0] == pytest.approx(1.0)
    with pytest.raises(InterpError):
        nearest_neighbours(x, 9)
