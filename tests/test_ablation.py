import dataclasses
import signal

import pytest
import torch

from gpt import train as train_cli
from gpt.config import GPTConfig
from gpt.interp.ablation import ablate, all_heads, check_heads, generate_with_ablation, logits_with_ablation
from gpt.interp.experiments import TASKS, answer_accuracy, build_probe, check, write_corpus
from gpt.model import GPT
from gpt.runs import load_run


def small_model(arch="gpt"):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=30, block_size=16, n_layer=2, n_head=3, n_embd=24, arch=arch)).eval()


def test_ablating_no_head_changes_nothing():
    model = small_model()
    ids = torch.randint(0, 30, (2, 16))
    plain, _ = model(ids)
    assert torch.allclose(logits_with_ablation(model, ids, []), plain.float(), atol=1e-5)
    val = torch.randint(0, 30, (200,))
    result = ablate(model, ids[0], val, [])
    assert result.delta_loss == 0.0 and result.total_variation == 0.0
    assert result.base_top == result.ablated_top
    prompt = ids[0, :5].tolist()
    assert generate_with_ablation(model, prompt, [], 8, seed=3) == generate_with_ablation(model, prompt, None, 8,
                                                                                          seed=3)


def test_ablating_a_head_changes_exactly_that_heads_contribution():
    model = small_model()
    ids = torch.randint(0, 30, (1, 16))
    changed = logits_with_ablation(model, ids, [(1, 2)])
    assert not torch.allclose(changed, logits_with_ablation(model, ids))
    # the cached model itself is untouched: a plain call still gives the intact output
    assert torch.allclose(model(ids)[0].float(), logits_with_ablation(model, ids), atol=1e-5)
    assert len(all_heads(model)) == 6
    assert check_heads(model, [(1, 2), (0, 0), (1, 2)]) == [(0, 0), (1, 2)]


def test_bad_heads_are_refused_with_a_clear_message():
    model = small_model()
    with pytest.raises(ValueError, match="L2H0 does not exist"):
        check_heads(model, [(2, 0)])
    with pytest.raises(ValueError, match="pair"):
        check_heads(model, ["x"])
    with pytest.raises(ValueError, match="bigram"):
        check_heads(small_model("bigram"), [(0, 0)])
    with pytest.raises(ValueError, match="empty"):
        generate_with_ablation(model, [], [])


@pytest.mark.slow
def test_ablating_all_heads_removes_in_context_copying(tmp_path):
    """A 1-layer attention-only model learns to copy; with its heads zeroed it is back to chance."""
    task = dataclasses.replace(TASKS["copy"], min_len=4, max_len=4)
    corpus = write_corpus(task, n_lines=5000, folder=tmp_path)
    out = tmp_path / "copy1"
    # one fixed offset (4 back) solves it, so one layer suffices; width 128 and no weight decay learn it in
    # ~200 steps, ~15 s of CPU
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = train_cli.main(["--corpus", str(corpus), "--out", str(out), "--arch", "multi_head", "--n-layer", "1",
                       "--n-head", "2", "--n-embd", "128", "--block-size", "16", "--batch-size", "32",
                       "--max-iters", "350", "--lr", "3e-3", "--warmup-iters", "20", "--weight-decay", "0",
                       "--eval-interval", "350", "--eval-iters", "2", "--quiet", "--dtype", "float32",
                       "--sample-tokens", "0"])
    for sig, handler in handlers.items():  # main() installs its own stop handlers; give pytest its own back
        signal.signal(sig, handler)
    assert code == 0
    run = load_run(out)
    probe = build_probe(task, run.tokenizer, run.config.block_size)
    before = answer_accuracy(run.model, probe)
    after = answer_accuracy(run.model, probe, all_heads(run.model))
    assert before >= 0.9, before
    assert after <= 0.15, after  # chance is 1/16 (a model without attention sees only the current token)
    verdict = check(run.model, run.tokenizer, task)
    assert verdict.passed and verdict.best_pointer[2] >= 0.5, verdict.verdict



def test_ablation_loss_windows_shrink_with_the_model():
    from gpt.interp.ablation import loss_windows
    shipped = GPTConfig(vocab_size=65, n_layer=4, n_head=6, n_embd=192, block_size=128)
    assert loss_windows(shipped) == (128, 8)   # the shipped model's size: 8 whole contexts
    gpt2_small = GPTConfig(vocab_size=50257, n_layer=12, n_head=12, n_embd=768, block_size=1024)
    window, n = loss_windows(gpt2_small)
    assert window == 128 and 2 <= n < 8
