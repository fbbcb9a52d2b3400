"""Default examples fit the selected run's tokenizer: the Patching page's worked example is a pair of prompts of one
token length with single-token answers, for a char model (the shipped example exactly) and for a BPE."""
import pytest

from gpt.interp.patching import WORKED_EXAMPLE, fitting_example, single_token_id
from gpt.tokenizers import BPETokenizer, CharTokenizer


def check_fits(tokenizer, example, block_size):
    clean, corrupted = tokenizer.encode(example["clean"]), tokenizer.encode(example["corrupted"])
    assert len(clean) == len(corrupted) <= block_size
    answer = single_token_id(tokenizer, example["answer"])
    wrong = single_token_id(tokenizer, example["wrong"], "wrong answer")
    assert answer != wrong


def test_a_char_model_gets_the_shipped_worked_example(corpus_text):
    tok = CharTokenizer.train(corpus_text)
    assert fitting_example(tok, 128) == WORKED_EXAMPLE


@pytest.mark.parametrize("vocab_size", [300, 700])
def test_a_bpe_gets_a_pair_of_equal_length(corpus_text, vocab_size):
    tok = BPETokenizer.train(corpus_text[:30_000], vocab_size)
    # the shipped pair does not fit a BPE: the names split into unlike numbers of tokens
    assert len(tok.encode(WORKED_EXAMPLE["clean"])) != len(tok.encode(WORKED_EXAMPLE["corrupted"]))
    example = fitting_example(tok, 1024)
    assert example is not None
    check_fits(tok, example, 1024)


def test_no_fitting_pair_is_none_not_a_broken_example():
    lowercase_only = CharTokenizer(sorted(set("abcdefghijklmnopqrstuvwxyz :\n!.")))
    assert fitting_example(lowercase_only, 128) is None      # cannot read the names
    assert fitting_example(CharTokenizer.train(WORKED_EXAMPLE["clean"] + "BRUTSHAML"), 10) is None  # too long
