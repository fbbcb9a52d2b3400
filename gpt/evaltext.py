"""The evaluation text: the one passage of held-out text that every text-reading view of a run uses.

Ablation's loss windows, the Heads page's text probe, Per-token loss, MLP top contexts, feature cards and the
default prompts all read "some text the model did not train on". A run trained here has its own answer: the
validation split (last 10%) of its corpus. An imported model (GPT-2) records no corpus, so the learner picks one:
a built-in corpus (its held-out last 10%, so a run trained on it is still judged on unseen text) or a text of
their own. This module turns that choice into token ids for a given run, once, with a label the pages show.

A character-level tokenizer cannot read characters it never saw (python-docs has '<' and '{', which tiny
Shakespeare lacks): those are dropped and named, rather than refusing the whole text.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gpt.data import BUILTIN_CORPORA, CorpusError, check_text, load_corpus, validation_text
from gpt.evaluate import run_validation_ids

RUN_SPLIT = "run"          # the run's own validation split
PASTED = "pasted"          # a text the learner pasted or uploaded
MIN_TOKENS = 2             # fewer and there is nothing to predict


@dataclass(frozen=True)
class EvalText:
    source: str                 # RUN_SPLIT, a built-in corpus name, or PASTED
    label: str                  # what the pages say they read, e.g. "the validation split of tiny-shakespeare"
    text: str                   # the text read, without the characters the tokenizer cannot read
    ids: torch.Tensor           # (N,) its token ids
    dropped: list[str] = field(default_factory=list)  # unreadable characters removed, in order of appearance
    n_dropped: int = 0          # how many characters that removed

    def describe(self) -> str:
        """One line for a caption: which text, how long, what was left out."""
        line = f"{self.label} ({len(self.ids):,} tokens)"
        if self.dropped:
            shown = " ".join(repr(c) for c in self.dropped[:12]) + (" ..." if len(self.dropped) > 12 else "")
            line += (f"; {self.n_dropped:,} characters this tokenizer cannot read were left out: {shown}")
        return line


def source_label(source: str, run_corpus: str | None = None, pasted_name: str = "pasted text") -> str:
    """How a source is named in the picker and in captions."""
    if source == RUN_SPLIT:
        return f"the validation split of {short_corpus_name(run_corpus)} (this run's own)"
    if source in BUILTIN_CORPORA:
        return f"{source} (its last 10%)"
    if source == PASTED:
        return pasted_name
    raise CorpusError(f"unknown evaluation text {source!r}; choose {RUN_SPLIT!r}, a built-in corpus "
                      f"({', '.join(BUILTIN_CORPORA)}) or {PASTED!r}")


def short_corpus_name(spec: str | None) -> str:
    return str(spec or "?").replace("\\", "/").rsplit("/", 1)[-1]


def eval_sources(run_corpus: str | None) -> list[str]:
    """The choices for a run that recorded `run_corpus` (None for an imported model): its own validation split
    first where it has one, then the built-in corpora, then a text of the learner's own."""
    return ([RUN_SPLIT] if run_corpus else []) + list(BUILTIN_CORPORA) + [PASTED]


def default_source(run_corpus: str | None) -> str:
    return eval_sources(run_corpus)[0]


def readable_part(tokenizer, text: str) -> tuple[str, list[str], int]:
    """(text without the characters the tokenizer cannot read, those characters, how many were removed)."""
    unknown = tokenizer.unknown_chars(text)
    if not unknown:
        return text, [], 0
    bad = set(unknown)
    kept = "".join(c for c in text if c not in bad)
    return kept, unknown, len(text) - len(kept)


def source_text(run_corpus: str | None, source: str, pasted: str | None = None,
                pasted_name: str = "pasted text") -> tuple[str, str]:
    """(label, raw text) of an evaluation-text source, before any tokenizer reads it: cheap enough for a default
    prompt (no tokenizing). For RUN_SPLIT the text is the corpus's last 10% from the next line start."""
    label = source_label(source, run_corpus, pasted_name)
    if source == RUN_SPLIT:
        if not run_corpus:
            raise CorpusError("this run does not record its corpus, so it has no validation split of its own; "
                              "choose a built-in corpus or paste a text as the evaluation text")
        return label, validation_text(load_corpus(str(run_corpus))[0])
    if source in BUILTIN_CORPORA:
        return label, validation_text(load_corpus(source)[0])
    if pasted is None:
        raise CorpusError("no text pasted or uploaded yet: add one under the evaluation-text choice in the sidebar")
    return label, check_text(pasted, pasted_name)


def evaluation_text(run, source: str, pasted: str | None = None, pasted_name: str = "pasted text") -> EvalText:
    """The evaluation text `source` read with `run`'s tokenizer (run: gpt.runs.LoadedRun). Raises CorpusError
    with a message a learner can act on when it cannot be read or holds nothing this tokenizer can read."""
    run_corpus = run.extra.get("corpus")
    label, text = source_text(run_corpus, source, pasted, pasted_name)
    if source == RUN_SPLIT:  # the trainer's own split of the token ids; its text is exactly those tokens
        ids = run_validation_ids(run)
        return EvalText(source, label, run.tokenizer.decode(ids.tolist()), ids)
    kept, dropped, n_dropped = readable_part(run.tokenizer, text)
    ids = torch.tensor(run.tokenizer.encode(kept), dtype=torch.long)
    if len(ids) < MIN_TOKENS:
        raise CorpusError(f"{label} holds {len(ids)} token(s) this tokenizer can read; at least {MIN_TOKENS} are "
                          "needed (and most pages want a few hundred)")
    return EvalText(source, label, kept, ids, dropped, n_dropped)


def excerpt(text: str, n_chars: int) -> str:
    """The first n_chars of an evaluation text (which starts at a line start), without leading blank lines."""
    return text[:n_chars + 40].lstrip("\n")[:n_chars]
