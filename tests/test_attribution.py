"""Direct logit attribution, activation patching and steering (gpt/interp/attribution, patching, steering):
the parts add up to the model's own logit on every ladder rung and architecture option, patching's invariants
hold, bad requests are refused with a clear message, and unsteered generation is plain generation."""
import pytest
import torch
from model_support import V, model_for, pair

from gpt.generate import stream_tokens
from gpt.interp.attribution import describe_top_heads, direct_logit_attribution, predicted_token
from gpt.interp.capture import InterpError, run_with_cache
from gpt.interp.patching import Patch, patch_heads, patch_mlps, patch_residual, recovered_fractions, residual_points, single_token_id
from gpt.interp.steering import default_coefficients, generate_side_by_side, generate_steered, head_direction, mean_difference, neuron_direction
from gpt.tokenizers import CharTokenizer

OPTIONS = [{}, {"norm": "rmsnorm"}, {"norm": "none"}, {"pos_embedding": "rotary", "qk_norm": True},
           {"tie_embeddings": False, "activation": "relu2", "bias": False}, {"activation": "relu", "bias": False}]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("arch", ["bigram", "single_head", "multi_head", "gpt"])
def test_parts_add_up_to_the_models_logit(arch, options):
    model = model_for(arch, **options)
    ids = torch.randint(0, V, (12,))
    logits, _ = model(ids[None])  # the fast path: what GPT.forward says
    for position in (0, 7, -1):
        target = predicted_token(model, ids, position)
        assert target == int(logits[0, position].argmax())
        result = direct_logit_attribution(model, ids, position, target)
        assert result.total == pytest.approx(float(logits[0, position, target]), rel=1e-5, abs=1e-4)
        assert sum(result.parts.values()) == pytest.approx(result.total, abs=1e-9)
        diff = direct_logit_attribution(model, ids.tolist(), position, target, contrast=(target + 1) % V)
        assert diff.total == pytest.approx(float(logits[0, position, target] - logits[0, position, (target + 1) % V]),
                                           rel=1e-5, abs=1e-4)
    names = list(result.parts)
    assert names[0] == "embed"
    if model.config.has_attention:
        assert "L0H0" in names and f"L1H{model.config.effective_n_head - 1}" in names
        assert result.heads.shape == (2, model.config.effective_n_head)
        assert float(result.heads[1, 0]) == pytest.approx(result.parts["L1H0"], abs=1e-6)
    assert ("L0.mlp" in names) == model.config.has_mlp
    assert ("L0.attn_bias" in names) == (model.config.has_attention and model.config.bias)
    assert ("ln_f.bias" in names) == (model.config.norm == "layernorm" and model.config.bias)


def test_with_a_soft_cap_the_parts_explain_the_logit_before_the_cap():
    model = model_for("gpt", logit_softcap=3.0)
    ids = torch.randint(0, V, (10,))
    cache = run_with_cache(model, ids, {"ln_f.out"})
    pre_cap = model.lm_head(cache["ln_f.out"])[0, -1]
    result = direct_logit_attribution(model, ids, -1, 4, contrast=5)
    assert result.softcap == 3.0
    assert result.total == pytest.approx(float(pre_cap[4] - pre_cap[5]), rel=1e-5, abs=1e-4)
    # a difference of two capped logits, each a sum of many O(1) terms: relative, so it holds on AVX2 and AVX-512 alike
    assert result.model_logit == pytest.approx(float(cache.logits[0, -1, 4] - cache.logits[0, -1, 5]), rel=1e-5, abs=1e-5)


def test_attribution_refuses_bad_requests_clearly():
    model = model_for()
    ids = list(range(8))
    with pytest.raises(InterpError, match="outside the prompt of 8 tokens"):
        direct_logit_attribution(model, ids, 8, 1)
    with pytest.raises(InterpError, match="outside this model's vocabulary"):
        direct_logit_attribution(model, ids, 0, V)
    with pytest.raises(InterpError, match="contrast token is the target"):
        direct_logit_attribution(model, ids, 0, 3, contrast=3)
    with pytest.raises(InterpError, match="empty"):
        direct_logit_attribution(model, [], 0, 3)
    sentence = describe_top_heads(direct_logit_attribution(model, ids, -1, 3))
    assert sentence.startswith("The heads that write most directly") and "L" in sentence


# ---- patching ----
@pytest.mark.parametrize("arch", ["single_head", "multi_head", "gpt"])
def test_patching_invariants(arch):
    model = model_for(arch)
    clean, corrupted = pair()
    answer, wrong = 3, 7
    nothing, base = recovered_fractions(model, clean, corrupted, answer, wrong, [[]])
    assert float(nothing[0]) == pytest.approx(0.0, abs=1e-5)
    grid = patch_residual(model, clean, corrupted, answer, wrong)
    L, T = model.config.n_layer, clean.numel()
    assert grid.shape == (L + 1, T)
    assert float(grid[L, T - 1]) == pytest.approx(1.0, abs=1e-5)   # the last residual at the last position
    assert grid[L, :T - 1].abs().max() < 1e-5                     # other positions cannot reach the logit
    assert grid[0, 3:].abs().max() < 1e-5 and grid[0, :2].abs().max() < 1e-5  # only the changed token differs
    assert float(grid[0, 2]) == pytest.approx(1.0, abs=1e-4)      # ...and patching it restores everything
    heads = patch_heads(model, clean, corrupted, answer, wrong)
    assert heads.shape == (L, model.config.effective_n_head)
    # patching every head and MLP at once = patching every path from the changed token: all recovered
    everything = [Patch(f"blocks.{i}.attn.z", (slice(None),)) for i in range(L)]
    everything += [Patch(f"blocks.{i}.mlp.out", (slice(None),)) for i in range(L) if model.config.has_mlp]
    assert float(recovered_fractions(model, clean, corrupted, answer, wrong, [everything])[0][0]) == \
        pytest.approx(1.0, abs=1e-4)
    if model.config.has_mlp:
        assert patch_mlps(model, clean, corrupted, answer, wrong).shape == (L,)
    else:
        with pytest.raises(InterpError, match="no MLPs"):
            patch_mlps(model, clean, corrupted, answer, wrong)
    assert abs(base.clean_metric - base.corrupted_metric) > 1e-3


def test_patching_matches_one_unbatched_patch():
    """The batched grid equals patching one cell by hand through the model's own Trace."""
    from gpt.model import Trace
    model = model_for("gpt")
    clean, corrupted = pair()
    grid = patch_residual(model, clean, corrupted, 3, 7)
    name = residual_points(model)[1]
    clean_act = run_with_cache(model, clean, {name})[name]

    def paste(x):
        x = x.clone()
        x[:, 5] = clean_act[:, 5]
        return x
    logits, _ = model(corrupted[None], trace=Trace(set(), {name: paste}))
    cm = run_with_cache(model, clean).logits[0, -1]
    km = run_with_cache(model, corrupted).logits[0, -1]
    m = lambda lg: float(lg[3] - lg[7])
    assert float(grid[1, 5]) == pytest.approx((m(logits[0, -1]) - m(km)) / (m(cm) - m(km)), abs=1e-4)


def test_patching_refuses_bad_pairs_clearly():
    model = model_for()
    clean, corrupted = pair()
    with pytest.raises(InterpError, match="clean prompt has 10 tokens and the corrupted one 9"):
        patch_residual(model, clean, corrupted[:9], 3, 7)
    with pytest.raises(InterpError, match="same token"):
        patch_heads(model, clean, corrupted, 3, 3)
    with pytest.raises(InterpError, match="nothing to recover"):
        patch_heads(model, clean, clean, 3, 7)
    with pytest.raises(InterpError, match="no attention"):
        patch_residual(model_for("bigram"), clean, corrupted, 3, 7)
    tok = CharTokenizer.train("abcde ")
    assert single_token_id(tok, "c") == tok.encode("c")[0]
    with pytest.raises(InterpError, match="is 2 tokens"):
        single_token_id(tok, "ab")
    with pytest.raises(InterpError, match="does not know"):
        single_token_id(tok, "z")
    with pytest.raises(InterpError, match="empty"):
        single_token_id(tok, "")


# ---- steering ----
@pytest.mark.parametrize("options", [{}, {"pos_embedding": "rotary"}])
def test_coefficient_zero_is_plain_generation(options):
    model = model_for("gpt", **options)
    prompt = [1, 2, 3, 4]
    vector = neuron_direction(model, 1, 5)
    plain = [s.token_id for s in stream_tokens(model, prompt, 20, temperature=1.0, seed=11)]
    columns = generate_side_by_side(model, prompt, vector, 1, [0.0, 100.0], max_new_tokens=20, seed=11)
    assert columns[0] == plain
    assert columns[1] != plain
    # the steered loop itself (KV cache + intervention) with a zero push gives the same greedy text, also past
    # block_size where the window slides
    greedy = [s.token_id for s in stream_tokens(model, prompt, 30, greedy=True)]
    assert generate_steered(model, prompt, torch.zeros(16), 2, 1.0, max_new_tokens=30, greedy=True) == greedy


def test_steering_vectors_and_refusals():
    model = model_for("gpt")
    a, b = [[1, 2, 3], [1, 2, 4, 5]], [[9, 8, 7]]
    diff = mean_difference(model, a, b, 1)
    name = residual_points(model)[1]
    mean_a = torch.stack([run_with_cache(model, p, {name})[name][0].mean(0) for p in a]).mean(0)
    assert torch.allclose(diff, mean_a - run_with_cache(model, b[0], {name})[name][0].mean(0), atol=1e-5)
    assert torch.equal(neuron_direction(model, 0, 3), model.blocks[0].mlp.c_proj.weight[:, 3])
    ids = [1, 2, 3, 4, 5]
    attn_out = run_with_cache(model, ids, {"blocks.1.attn.out"})["blocks.1.attn.out"][0].mean(0)
    heads = sum(head_direction(model, ids, 1, h) for h in range(2)) + model.blocks[1].attn.c_proj.bias
    assert torch.allclose(heads, attn_out, atol=1e-5)  # the heads' directions add up to the layer's output
    coefficients = default_coefficients(diff, 10.0)
    assert coefficients[0] == 0 and coefficients[-1] == pytest.approx(10.0 / float(diff.norm()), rel=0.05)
    with pytest.raises(InterpError, match="boundary 9 does not exist"):
        generate_steered(model, [1], diff, 9, 1.0)
    with pytest.raises(InterpError, match="16 numbers"):
        generate_steered(model, [1], torch.zeros(3), 0, 1.0)
    with pytest.raises(InterpError, match="neuron 64 does not exist"):
        neuron_direction(model, 0, 64)
    with pytest.raises(InterpError, match="no MLPs"):
        neuron_direction(model_for("multi_head"), 0, 1)
    with pytest.raises(InterpError, match="all zeros"):
        default_coefficients(torch.zeros(16), 1.0)
    with pytest.raises(InterpError, match="temperature"):
        generate_steered(model, [1], diff, 0, 1.0, temperature=0)
