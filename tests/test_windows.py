"""One way to read a whole text: consecutive non-overlapping windows, the shorter last one included
(gpt.evaluate.consecutive_windows), for losses, feature evaluation, feature cards, neuron scans and ablation."""
from __future__ import annotations

import pytest
import torch

from gpt.config import GPTConfig
from gpt.evaluate import consecutive_windows, validation_loss
from gpt.interp.ablation import loss_sample_windows
from gpt.interp.neurons import top_contexts
from gpt.model import GPT


@pytest.mark.parametrize("n", [1, 2, 17, 33, 34, 35, 100])
def test_windows_cover_every_token_once_tail_included(n):
    ids = torch.arange(n)
    xs = [x for x, y in consecutive_windows(ids, 8, batch=3, targets=False)]
    assert torch.equal(torch.cat([x.flatten() for x in xs]) if xs else torch.zeros(0, dtype=torch.long), ids)
    pairs = list(consecutive_windows(ids, 8, batch=3))
    if n < 2:
        assert pairs == []
        return
    assert torch.equal(torch.cat([x.flatten() for x, _ in pairs]), ids[:-1])   # every token but the last is an input
    assert torch.equal(torch.cat([y.flatten() for _, y in pairs]), ids[1:])    # every token but the first a target
    for x, y in pairs:
        assert x.shape == y.shape and x.size(1) <= 8


def test_validation_loss_is_the_mean_over_the_windows():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8)).eval()
    ids = torch.randint(0, 20, (45,))  # 44 targets: 5 windows of 8 and a last one of 4
    total = sum(torch.nn.functional.cross_entropy(model(x)[0].flatten(0, 1), y.flatten(), reduction="sum")
                for x, y in consecutive_windows(ids, 8))
    assert validation_loss(model, ids) == pytest.approx(float(total) / 44, rel=1e-6)


def test_a_neuron_scan_reads_the_tail_and_ablation_samples_whole_windows():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8)).eval()
    ids = torch.randint(0, 20, (45,))
    scan = top_contexts(model, ids, k=4)
    assert scan.n_tokens == 45  # the last 5 tokens (a shorter window) are scanned too
    x, y = loss_sample_windows(ids, 8, n_windows=3)
    assert x.shape == y.shape == (3, 8)
    assert torch.equal(x[0], ids[:8]) and torch.equal(x[-1], ids[32:40])  # first and last whole window
    assert torch.equal(y[0], ids[1:9])
