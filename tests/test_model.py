import pytest
import torch

from gpt.config import ConfigError, GPTConfig, preset
from gpt.model import GPT, Trace, capture_names
from gpt.sizing import count_params, flops_per_token, memory_estimate

ARCHS = ["bigram", "single_head", "multi_head", "gpt"]


def make(arch="gpt", **kw):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=32, arch=arch, **kw)
    return GPT(cfg).eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_shapes_and_loss(arch):
    model = make(arch)
    idx = torch.randint(0, 50, (3, 16))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 16, 50)
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 50), idx.reshape(-1))
    assert torch.allclose(loss, expected)
    assert model(idx)[1] is None


@pytest.mark.parametrize("arch", ARCHS)
def test_causality(arch):
    """Changing token t never changes the logits at positions before t."""
    model = make(arch)
    idx = torch.randint(0, 50, (1, 16))
    base, _ = model(idx)
    for t in (0, 5, 15):
        changed = idx.clone()
        changed[0, t] = (changed[0, t] + 1) % 50
        out, _ = model(changed)
        assert torch.allclose(out[0, :t], base[0, :t], atol=1e-6)
        assert not torch.allclose(out[0, t:], base[0, t:])


@pytest.mark.parametrize("arch", ARCHS)
def test_sdpa_and_inspection_paths_agree(arch):
    model = make(arch)
    idx = torch.randint(0, 50, (2, 16))
    fast, _ = model(idx)
    trace = Trace()
    slow, _ = model(idx, trace=trace)
    assert torch.allclose(fast, slow, atol=1e-5)
    if arch != "bigram":
        pattern = trace.acts["blocks.0.attn.pattern"]
        heads = 1 if arch == "single_head" else 4
        assert pattern.shape == (2, heads, 16, 16)
        assert torch.allclose(pattern.sum(-1), torch.ones(2, heads, 16))
        assert torch.all(pattern.triu(diagonal=1) == 0)  # causal mask
    assert set(trace.acts) == set(capture_names(model.config))


def test_trace_intervention_zeroes_a_head():
    model = make()
    idx = torch.randint(0, 50, (1, 16))

    def zero_head(z):
        z = z.clone()
        z[:, 1] = 0
        return z
    trace = Trace(names={"blocks.0.attn.z"}, interventions={"blocks.0.attn.z": zero_head})
    ablated, _ = model(idx, trace=trace)
    assert torch.all(trace.acts["blocks.0.attn.z"][:, 1] == 0)
    assert not torch.allclose(ablated, model(idx)[0])


def test_weight_tying_and_param_count():
    model = make()
    assert model.lm_head.weight is model.wte.weight
    assert model.num_params() == count_params(model.config)
    for name in ("nanogpt-cpu", "shakespeare-char"):
        cfg, _ = preset(name)
        assert GPT(cfg).num_params() == count_params(cfg)
    bigram = make("bigram")
    assert bigram.num_params() == count_params(bigram.config)


def test_gpt2_preset_size_without_building():
    cfg, _ = preset("gpt2")
    assert count_params(cfg) == 124_439_808  # GPT-2 small, tied embeddings
    mem = memory_estimate(cfg, batch_size=8)
    assert mem["total_bytes"] > 16 * cfg.n_layer * 768 ** 2
    assert flops_per_token(cfg) > 6 * 85_000_000


@pytest.mark.slow
def test_overfits_one_batch():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=32))
    idx = torch.randint(0, 20, (4, 16))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


@pytest.mark.parametrize("bad, message", [
    (dict(n_embd=30, n_head=4), "divisible"),
    (dict(n_layer=0), "n_layer"),
    (dict(block_size=-1), "block_size"),
    (dict(dropout=1.5), "dropout"),
    (dict(arch="transformer"), "arch"),
])
def test_bad_configs_are_explained(bad, message):
    with pytest.raises(ConfigError, match=message):
        GPT(GPTConfig(**{**dict(vocab_size=10), **bad}))


def test_from_dict_rejects_wrong_types_and_unknown_keys():
    with pytest.raises(ConfigError, match="n_layer"):
        GPTConfig.from_dict({"n_layer": "4"})
    with pytest.raises(ConfigError, match="unknown"):
        GPTConfig.from_dict({"n_layers": 4})
    with pytest.raises(ConfigError):
        GPTConfig.from_dict(["not", "a", "dict"])


def test_grad_checkpoint_gives_same_gradients():
    model = make(dropout=0.0).train()
    idx = torch.randint(0, 50, (2, 16))
    _, loss = model(idx, idx)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.grad_checkpoint = True
    _, loss2 = model(idx, idx)
    loss2.backward()
    assert torch.allclose(loss, loss2)
    for g, p in zip(grads, model.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-6)


def test_too_long_input_is_refused():
    with pytest.raises(ValueError, match="block_size"):
        make()(torch.zeros(1, 17, dtype=torch.long))
