"""gpt.interp.neurons: the top contexts really are where a neuron fires most over the validation text; they are
cached in the run folder; the logit effect is W_out's column through the unembedding."""
import pytest
import torch
from model_support import model_and_text

from gpt.interp import InterpError
from gpt.interp.neurons import cache_path, cached_top_contexts, neuron_activations, neuron_logit_effect, top_contexts


def test_top_context_has_the_highest_activation_over_the_text():
    model, seq = model_and_text()
    result = top_contexts(model, seq, k=3)
    assert result.n_tokens == 323  # 40 whole windows and the last 3 tokens (gpt.evaluate.consecutive_windows)
    windows = list(seq[:320].view(40, 8)) + [seq[320:]]
    for layer in range(2):
        every = torch.cat([neuron_activations(model, w, layer) for w in windows])  # (323, 32), window by window
        for neuron in (0, 5, 31):
            top_pos = int(result.positions[layer, neuron, 0])  # ties are possible: a window's first token
            assert float(every[top_pos, neuron]) == pytest.approx(float(every[:, neuron].max()), abs=1e-5)
            assert float(result.values[layer, neuron, 0]) == pytest.approx(float(every[top_pos, neuron]), abs=1e-5)
            assert result.values[layer, neuron].tolist() == sorted(result.values[layer, neuron].tolist(), reverse=True)
    value, before, token, after = result.contexts(seq, 1, 5, before=4, after=2)[0]
    pos = int(result.positions[1, 5, 0])
    assert token == int(seq[pos]) and before == seq[max(0, pos - 4):pos].tolist()


def test_cached_in_the_run_folder(tmp_path):
    model, seq = model_and_text()

    class Run:  # the fields of gpt.runs.LoadedRun that are used
        path, step, config = tmp_path, 7, model.config
    Run.model = model
    first = cached_top_contexts(Run, seq)
    assert cache_path(tmp_path, 7, seq).exists()
    Run.model = None  # a second call must not need the model
    again = cached_top_contexts(Run, seq)
    assert torch.equal(first.positions, again.positions) and again.n_tokens == first.n_tokens
    other = seq.flip(0)   # another evaluation text is another scan, never the first text's answer
    assert cache_path(tmp_path, 7, other) != cache_path(tmp_path, 7, seq)
    Run.model = model
    assert int(cached_top_contexts(Run, other).n_tokens) == first.n_tokens
    assert cache_path(tmp_path, 7, other).exists()


def test_logit_effect_and_refusals():
    model, _ = model_and_text()
    effect = neuron_logit_effect(model, 1, 3)
    want = model.lm_head.weight @ model.blocks[1].mlp.c_proj.weight[:, 3]
    torch.testing.assert_close(effect, want.detach())
    with pytest.raises(InterpError, match="neuron must be"):
        neuron_logit_effect(model, 0, 32)
    with pytest.raises(InterpError, match="no feed-forward"):
        top_contexts(model_and_text("multi_head")[0], torch.zeros(16, dtype=torch.long))
