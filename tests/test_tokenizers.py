import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt.tokenizers import (
    BPETokenizer,
    CharTokenizer,
    TokenizerError,
    UnknownCharactersError,
    load_tokenizer,
    save_tokenizer,
    tokenizer_from_dict,
)


@pytest.fixture(scope="module")
def bpe(corpus_text):
    return BPETokenizer.train(corpus_text[:300_000], 400)


def test_char_roundtrip_and_spans():
    tok = CharTokenizer.train("hello world")
    ids, spans = tok.encode("hello", with_spans=True)
    assert tok.decode(ids) == "hello"
    assert spans == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    assert tok.vocab_size == len(set("hello world"))


def test_char_unknown_characters_are_named_not_dropped():
    tok = CharTokenizer.train("abc")
    with pytest.raises(UnknownCharactersError) as err:
        tok.encode("abxcyx")
    assert err.value.chars == ["x", "y"]
    assert "'x'" in str(err.value) and "'y'" in str(err.value)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_bpe_roundtrips_any_unicode(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


@pytest.mark.parametrize("text", ["emoji 🤖👩‍👩‍👧 ok", "漢字かなカナ", "ctrl \x00\x01\x1b[31m\r\n\t end", "", " ", "\u200b\ufeff"])
def test_bpe_roundtrip_hard_cases(bpe, text):
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_bpe_spans_cover_text(bpe, text):
    ids, spans = bpe.encode(text, with_spans=True)
    assert len(spans) == len(ids)
    for (start, end), tid in zip(spans, ids):
        assert 0 <= start < end <= len(text)
        # the token's bytes lie within the characters of its span
        assert bpe.token_bytes(tid) in text[start:end].encode("utf-8")


def test_bpe_merges_compress_and_are_ordered(bpe, corpus_text):
    sample = corpus_text[:20_000]
    assert len(bpe.encode(sample)) < 0.6 * len(sample.encode("utf-8"))
    assert [m[2] for m in bpe.merges] == list(range(256, 256 + len(bpe.merges)))
    assert bpe.vocab_size == 400


def test_bpe_replay_builds_word(bpe):
    steps = bpe.replay(" the")
    assert len(steps[0]) == 4 and len(steps[-1]) == 1
    assert bpe.decode(steps[-1]) == " the"


def test_bpe_training_speed_vocab_1024(corpus_text):
    t0 = time.perf_counter()
    tok = BPETokenizer.train(corpus_text, 1024)
    elapsed = time.perf_counter() - t0
    assert tok.vocab_size == 1024
    assert elapsed < 20, f"BPE training took {elapsed:.1f}s"  # bench/ tracks the 10 s goal


@pytest.mark.parametrize("make", [lambda t: CharTokenizer.train(t), lambda t: BPETokenizer.train(t, 300)])
def test_save_load_roundtrip(tmp_path, corpus_text, make):
    tok = make(corpus_text[:50_000])
    save_tokenizer(tok, tmp_path / "tokenizer.json")
    again = load_tokenizer(tmp_path / "tokenizer.json")
    sample = corpus_text[1000:3000]
    assert again.encode(sample) == tok.encode(sample)
    assert again.vocab() == tok.vocab()


def test_bad_tokenizer_files(tmp_path):
    (tmp_path / "t.json").write_text("{not json")
    with pytest.raises(TokenizerError):
        load_tokenizer(tmp_path / "t.json")
    with pytest.raises(TokenizerError):
        tokenizer_from_dict({"kind": "bpe", "vocab": ["00"], "merges": []})
    with pytest.raises(TokenizerError):
        tokenizer_from_dict({"kind": "nope"})
    with pytest.raises(TokenizerError):
        BPETokenizer.train("abc", 100)
    with pytest.raises(TokenizerError):
        CharTokenizer.train("")
