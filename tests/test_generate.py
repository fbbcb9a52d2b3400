import pytest
import torch

from gpt.config import GPTConfig
from gpt.generate import GenerationError, filter_logits, generate_text, stream_tokens
from gpt.model import GPT
from gpt.tokenizers import CharTokenizer, UnknownCharactersError


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=30, block_size=12, n_layer=2, n_head=2, n_embd=16)).eval()


def test_kv_cache_matches_full_recompute(model):
    idx = torch.randint(0, 30, (1, 12))
    full, _ = model(idx)
    cache = model.new_kv_cache()
    first, _ = model(idx[:, :5], kv_cache=cache)
    steps = [first]
    for t in range(5, 12):
        out, _ = model(idx[:, t:t + 1], kv_cache=cache)
        steps.append(out)
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)
    # a multi-token chunk on top of a cache also respects causality
    cache = model.new_kv_cache()
    model(idx[:, :4], kv_cache=cache)
    chunk, _ = model(idx[:, 4:9], kv_cache=cache)
    assert torch.allclose(chunk, full[:, 4:9], atol=1e-5)


MODERN = dict(pos_embedding="rotary", norm="rmsnorm", qk_norm=True, tie_embeddings=False, logit_softcap=5.0)


@pytest.mark.parametrize("arch,activation,options", [
    ("gpt", "gelu", {}), ("gpt", "gelu_tanh", {}), ("multi_head", "gelu", {}), ("single_head", "gelu", {}),
    ("bigram", "gelu", {}), ("gpt", "relu", {}), ("gpt", "relu2", MODERN), ("gpt", "gelu", {"norm": "none"}),
    ("multi_head", "gelu", MODERN)])
def test_decode_next_matches_forward(arch, activation, options):
    """The lean one-token path gives forward's logits, token by token, for a batch, every ladder rung and every
    architecture option (tests/test_speedrun_options.py checks each option alone)."""
    torch.manual_seed(1)
    m = GPT(GPTConfig(vocab_size=30, block_size=10, n_layer=2, n_head=2, n_embd=16, arch=arch,
                      activation=activation, **options)).eval()
    idx = torch.randint(0, 30, (3, 10))
    full, _ = m(idx)
    cache = m.new_kv_cache()
    m(idx[:, :2], kv_cache=cache)
    for t in range(2, 10):
        logits = m.decode_next(idx[:, t:t + 1], cache)  # (B, vocab)
        assert torch.allclose(logits, full[:, t], atol=1e-5), t
    assert cache.length == 10
    with pytest.raises(ValueError, match="longer than block_size"):
        m.decode_next(idx[:, :1], cache)


def test_cached_and_uncached_generation_agree_past_block_size(model):
    kw = dict(max_new_tokens=30, greedy=True)  # 3 + 30 tokens > block_size 12: the window slides
    cached = [s.token_id for s in stream_tokens(model, [1, 2, 3], use_cache=True, **kw)]
    uncached = [s.token_id for s in stream_tokens(model, [1, 2, 3], use_cache=False, **kw)]
    assert cached == uncached and len(cached) == 30


def test_sampling_is_seeded_and_reports_probabilities(model):
    a = list(stream_tokens(model, [1], 20, temperature=1.0, seed=7))
    b = list(stream_tokens(model, [1], 20, temperature=1.0, seed=7))
    assert [s.token_id for s in a] == [s.token_id for s in b]
    for s in a:
        assert 0 < s.prob <= 1
        assert len(s.alternatives) == 5
        assert s.alternatives[0][1] >= s.alternatives[-1][1]


def test_greedy_picks_argmax(model):
    step = next(stream_tokens(model, [3, 4], 1, greedy=True))
    logits, _ = model(torch.tensor([[3, 4]]))
    assert step.token_id == int(logits[0, -1].argmax())


def test_filters():
    logits = torch.tensor([3.0, 2.0, 1.0, 0.0])
    assert torch.isinf(filter_logits(logits, top_k=2)[2:]).all()
    kept = ~torch.isinf(filter_logits(logits, top_p=0.5))
    assert kept.tolist() == [True, False, False, False]
    kept = ~torch.isinf(filter_logits(logits, top_p=0.9))
    assert kept.tolist() == [True, True, True, False]


def test_top_k_one_is_greedy(model):
    a = [s.token_id for s in stream_tokens(model, [5], 10, top_k=1, seed=1)]
    b = [s.token_id for s in stream_tokens(model, [5], 10, greedy=True)]
    assert a == b


def test_text_generation_and_stop_string():
    torch.manual_seed(0)
    tok = CharTokenizer.train("abc \n")
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=1, n_embd=8)).eval()
    text = generate_text(model, tok, "ab", max_new_tokens=50, seed=3, stop="c")
    assert text.endswith("c") and text.count("c") == 1 or "c" not in text
    with pytest.raises(UnknownCharactersError, match="'z'"):
        generate_text(model, tok, "az", max_new_tokens=5)
    with pytest.raises(GenerationError, match="empty"):
        generate_text(model, tok, "", max_new_tokens=5)
    with pytest.raises(GenerationError, match="temperature"):
        generate_text(model, tok, "a", max_new_tokens=5, temperature=0)
