import pytest
import torch

from gpt.evaluate import run_validation_ids as validation_ids
from gpt.interp.rundiff import config_diff, diff_runs
from gpt.interp.token_loss import token_losses, validation_passage
from gpt.runs import load_run


def test_a_run_against_itself_differs_nowhere(tiny_run):
    run = load_run(tiny_run)
    text = run.tokenizer.decode(validation_ids(run)[:20].tolist())
    diff = diff_runs(run, run, text)
    assert torch.allclose(diff.logprob_delta, torch.zeros(19))
    assert diff.attention_delta.abs().max() == 0
    assert diff.config == []


def test_two_snapshots_differ_in_step_predictions_and_attention(tiny_run):
    early, late = load_run(tiny_run, step=0), load_run(tiny_run, step=60)
    text = late.tokenizer.decode(validation_ids(late)[:24].tolist())
    diff = diff_runs(early, late, text)
    assert diff.logprob_delta.shape == (23,)
    assert diff.logprob_delta.mean() > 0  # training made the real text more likely
    assert diff.head_change().shape == (2, 2) and diff.head_change().max() > 0
    assert ("step", 0, 60) in diff.config


def test_unlike_tokenizers_are_refused(tiny_run):
    run = load_run(tiny_run)
    other = load_run(tiny_run)
    other.tokenizer = type(run.tokenizer)(list(reversed(run.tokenizer.chars)))
    text = run.tokenizer.decode(validation_ids(run)[:10].tolist())
    with pytest.raises(ValueError, match="tokenize this prompt differently"):
        diff_runs(run, other, text)


def test_config_diff_lists_changed_hyperparameters(tiny_run):
    a, b = load_run(tiny_run), load_run(tiny_run)
    b.train_config.lr = 0.5
    assert config_diff(a, b) == [("train.lr", a.train_config.lr, 0.5)]


def test_token_losses_match_the_models_loss(tiny_run):
    run = load_run(tiny_run)
    ids = validation_passage(validation_ids(run), 32, offset=100)
    result = token_losses(run.model, ids, k=3)
    with torch.no_grad():
        _, loss = run.model(torch.tensor([ids[:-1]]), torch.tensor([ids[1:]]))
    assert result.mean_loss == pytest.approx(float(loss), rel=1e-4)
    assert torch.isnan(result.losses[0]) and result.top_ids.shape == (32, 3)
    worst = result.worst(3)
    assert result.losses[worst[0]] == torch.nan_to_num(result.losses, nan=-1).max()
    assert len(validation_passage(validation_ids(run), 10**9)) == len(validation_ids(run))
