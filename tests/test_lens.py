import pytest
import torch

from gpt.config import GPTConfig
from gpt.interp.lens import lens_column, logit_lens, residual_names
from gpt.model import GPT


@pytest.mark.parametrize("arch", ["gpt", "multi_head", "single_head"])
def test_last_layer_of_the_lens_is_the_models_own_prediction(arch):
    torch.manual_seed(1)
    model = GPT(GPTConfig(vocab_size=40, block_size=16, n_layer=3, n_head=2, n_embd=32, arch=arch)).eval()
    ids = torch.randint(0, 40, (12,))
    lens = logit_lens(model, ids)
    logits, _ = model(ids[None])
    probs = torch.softmax(logits[0].float(), -1)  # (T, V)
    assert lens.labels == ["embeddings", "after block 0", "after block 1", "after block 2"]
    assert lens.top_ids.shape == (4, 12) and lens.probs.shape == (4, 12, 40)
    assert torch.equal(lens.top_ids[-1], probs.argmax(-1))
    assert torch.allclose(lens.probs[-1], probs, atol=1e-5)
    assert torch.allclose(lens.top_probs[-1], probs.max(-1).values, atol=1e-5)
    # the probability of the real next token, and nothing after the last position
    assert torch.allclose(lens.target_probs[-1, :-1], probs[torch.arange(11), ids[1:]], atol=1e-5)
    assert torch.isnan(lens.target_probs[:, -1]).all()
    # earlier layers are genuinely different readings
    assert not torch.allclose(lens.probs[0], lens.probs[-1])


def test_lens_column_and_bad_input():
    torch.manual_seed(2)
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=2, n_head=2, n_embd=16)).eval()
    lens = logit_lens(model, torch.randint(0, 20, (1, 8)))
    column = lens_column(lens, 3, k=4)
    assert len(column) == 3 and all(len(row) == 4 for row in column)
    assert column[-1][0][0] == int(lens.top_ids[-1, 3])
    with pytest.raises(ValueError, match="outside"):
        lens_column(lens, 8)
    with pytest.raises(ValueError, match="one sequence"):
        logit_lens(model, torch.randint(0, 20, (2, 8)))
    with pytest.raises(ValueError, match="bigram"):
        residual_names(GPT(GPTConfig(vocab_size=20, arch="bigram")))


def test_the_lens_at_one_position_is_that_column_of_the_whole_lens():
    from gpt.interp.capture import InterpError
    from gpt.interp.lens import lens_at
    torch.manual_seed(3)
    model = GPT(GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()
    ids = torch.randint(0, 40, (10,))
    whole = logit_lens(model, ids)
    for position in (0, 6, 9):
        labels, probs = lens_at(model, ids, position)
        assert labels == whole.labels and torch.allclose(probs, whole.probs[:, position], atol=1e-6)
    with pytest.raises(InterpError, match="outside 0..9"):
        lens_at(model, ids, 10)
