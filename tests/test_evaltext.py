"""The evaluation text (gpt/evaltext.py): what each choice reads for a run, named; what cannot be read, refused."""
import pytest
import torch

from gpt import runs
from gpt.data import CorpusError, load_corpus, validation_text
from gpt.evaltext import PASTED, RUN_SPLIT, default_source, eval_sources, evaluation_text
from gpt.evaluate import run_validation_ids


@pytest.fixture(scope="module")
def char_run(tiny_run):
    return runs.load_run(tiny_run)


def test_a_trained_run_defaults_to_its_own_validation_split(char_run):
    corpus = char_run.extra["corpus"]
    assert eval_sources(corpus)[0] == RUN_SPLIT == default_source(corpus)
    ev = evaluation_text(char_run, RUN_SPLIT)
    assert torch.equal(ev.ids, run_validation_ids(char_run))   # the split the trainer validated on, exactly
    assert "validation split of corpus.txt" in ev.describe() and not ev.dropped


def test_a_run_without_a_corpus_offers_the_built_in_ones_and_says_why_not_its_own(char_run):
    assert RUN_SPLIT not in eval_sources(None) and default_source(None) == "tiny-shakespeare"
    char_run.extra.pop("corpus")   # as an imported GPT-2 (the module's other tests are done with this key)
    try:
        with pytest.raises(CorpusError, match="does not record its corpus.*choose a built-in corpus"):
            evaluation_text(char_run, RUN_SPLIT)
        ev = evaluation_text(char_run, "tiny-shakespeare")
    finally:
        char_run.extra["corpus"] = "restored"
    held_out = validation_text(load_corpus("tiny-shakespeare")[0])
    assert char_run.tokenizer.decode(ev.ids.tolist()) == ev.text
    assert ev.text == "".join(c for c in held_out if c not in set(ev.dropped))
    assert "tiny-shakespeare (its last 10%)" in ev.describe()


def test_characters_a_char_tokenizer_cannot_read_are_left_out_and_named(char_run):
    text = "To be, or not to be: {that} is <the> question.\n" * 3
    ev = evaluation_text(char_run, PASTED, text, "hamlet.txt")
    assert ev.dropped == ["{", "}", "<", ">"] and ev.n_dropped == 12
    assert ev.text == text.replace("{", "").replace("}", "").replace("<", "").replace(">", "")
    assert "hamlet.txt" in ev.describe() and "'{'" in ev.describe() and "12 characters" in ev.describe()


def test_bad_texts_are_refused_with_a_reason(char_run):
    with pytest.raises(CorpusError, match="no text pasted"):
        evaluation_text(char_run, PASTED, None)
    with pytest.raises(CorpusError, match="empty"):
        evaluation_text(char_run, PASTED, "   \n")
    with pytest.raises(CorpusError, match="1 token.*at least 2"):
        evaluation_text(char_run, PASTED, "a{}")
    with pytest.raises(CorpusError, match="unknown evaluation text 'wiki'"):
        evaluation_text(char_run, "wiki")
