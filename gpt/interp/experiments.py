"""Guided experiments: tiny synthetic tasks whose solution needs a known attention circuit.

Each task is a text corpus of lines `source|answer\n` (e.g. `dkbq|dkbq` for copy), so the ordinary trainer
(`python -m gpt.train`) learns it like any other text. After training, `check` measures
* answer accuracy: teacher-forced next-token accuracy on the answer characters of fresh lines, against chance;
* the pointer head: a head whose attention, at each answer position, lands on the source character that must
  come next (copy: the next one; reverse: the mirrored one; sort: the next larger one). Source characters are
  distinct, so that position is unique.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gpt.data import cache_dir
from gpt.interp.ablation import all_heads, logits_with_ablation
from gpt.interp.capture import attention_patterns
from gpt.interp.detectors import strongest_head
from gpt.model import GPT
from gpt.runs import atomic

ALPHABET = "abcdefghijklmnop"  # 16 symbols; sources use distinct ones
SEP, END = "|", "\n"


@dataclass(frozen=True)
class Task:
    name: str
    title: str
    explanation: str
    expect: str                        # what should grow, in one sentence
    min_len: int = 3
    max_len: int = 8
    options: tuple = ()                # (option, value) pairs for python -m gpt.train
    pointer_threshold: float = 0.5     # how focused the best pointer head must be to count as grown
    groups: bool = False               # source position i draws from its own 4-letter group of ALPHABET

    def answer(self, source: str) -> str:
        if self.name == "copy":
            return source
        if self.name == "reverse":
            return source[::-1]
        return "".join(sorted(source))


# Attention-only models, wide for their size and without weight decay: measured to learn these tasks several
# times faster than narrower or decayed ones. One thread: on a small shared machine that is the fastest.
_ATTN_ONLY = (("arch", "multi_head"), ("n_embd", 128), ("batch_size", 32), ("lr", 3e-3),
              ("min_lr", 3e-4), ("warmup_iters", 50), ("weight_decay", 0.0), ("eval_interval", 100),
              ("eval_iters", 5), ("sample_tokens", 60), ("dtype", "float32"), ("threads", 1))
TASKS: dict[str, Task] = {
    "copy": Task(
        "copy", "Copy a sequence",
        "Each line is five random letters, a bar, and the same letters again. Before the bar nothing is "
        "predictable; after it every letter is, but only by looking back. Lines all have the same length, so a "
        "single attention layer can solve it with one head that always looks back exactly five places and "
        "copies what it finds: the pointer head. Remove it (Ablation page) and accuracy falls to chance. "
        "Going further: with lines of varying length no fixed offset works, and a two-layer model has to grow "
        "an induction head (a previous-token head in layer 0 feeding a head in layer 1 that finds the earlier "
        "copy of the current letter and reads the one after it); that takes a few thousand steps.",
        "a pointer head that looks back exactly five positions (one source length) and copies that letter",
        min_len=5, max_len=5,
        options=_ATTN_ONLY + (("n_layer", 1), ("n_head", 2), ("block_size", 24), ("max_iters", 400))),
    "reverse": Task(
        "reverse", "Reverse a sequence",
        "Each line is four letters, a bar, and the letters backwards. Reversal by position is hard to learn "
        "from random windows of text: at answer step k the letter to fetch sits 2k+1 places back, so the model "
        "would first have to work out where the bar is. Here each source position draws from its own group of "
        "four letters (position 0 from a-d, 1 from e-h, 2 from i-l, 3 from m-p), so a letter also says where it "
        "stood, and attention can learn a content rule instead: 'fetch the most recent letter from the group "
        "below mine'. (With one layer it stalls near 80%: the same letter before the bar must not fetch; two "
        "layers can tell the two apart.) Look for a head whose pattern runs backwards through the source (an "
        "anti-diagonal); remove it and the answers become guesses.",
        "a pointer head that fetches, at each answer step, the source letter one group lower",
        min_len=4, max_len=4, groups=True,
        options=_ATTN_ONLY + (("n_layer", 2), ("n_head", 4), ("block_size", 24), ("max_iters", 600))),
    "sort": Task(
        "sort", "Sort a sequence",
        "Each line is a set of distinct letters, a bar, and the same letters in alphabetical order. The next "
        "output is the smallest source letter larger than the last one written: heads must compare letters, "
        "not positions. The work is often shared, several heads in the last layer each putting part of their "
        "attention on the right letter, so the check asks for a head with at least 30% there, and for accuracy "
        "to collapse when all heads are removed.",
        "a pointer head attending to the next larger source letter",
        min_len=3, max_len=6, pointer_threshold=0.3,
        options=_ATTN_ONLY + (("n_layer", 2), ("n_head", 4), ("block_size", 32), ("max_iters", 800))),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


# ---- data ----
def make_lines(task: Task, n_lines: int, seed: int = 0, length: int | None = None) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        n = length or rng.randint(task.min_len, task.max_len)
        if task.groups:  # letters that also say where they stood; still distinct within a line
            source = "".join(rng.choice(ALPHABET[4 * i:4 * i + 4]) for i in range(n))
        else:
            source = "".join(rng.sample(ALPHABET, n))
        lines.append(source + SEP + task.answer(source) + END)
    return lines


def write_corpus(task: Task, n_lines: int = 20000, seed: int = 0, folder: str | Path | None = None) -> Path:
    """The task's training text as a file (in the cache unless folder is given); same args -> same file."""
    folder = Path(folder) if folder else cache_dir() / "experiments"
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(make_lines(task, n_lines, seed))
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    path = folder / f"{task.name}-{digest}.txt"
    if not path.exists():  # two processes writing the same file at once both write it whole (own temp names)
        atomic.write_text(path, text)
    return path


def train_command(task: Task, corpus: Path, out: Path, python: str = "python") -> list[str]:
    """The CLI that trains a model on this task (what a user can run by hand; the app starts the same)."""
    cmd = [python, "-m", "gpt.train", "--corpus", str(corpus), "--out", str(out), "--quiet"]
    for key, value in task.options:
        cmd += ["--" + key.replace("_", "-"), str(value)]
    return cmd


def task_of_run(run) -> Task | None:
    """The task a run was trained on, recognised from its corpus file name (None for other runs)."""
    corpus = Path(str(run.extra.get("corpus") or ""))
    name = corpus.name.split("-", 1)[0]
    if corpus.parent.name == "experiments" and name in TASKS:
        return TASKS[name]
    return None


# ---- evaluation ----
@dataclass
class Probe:
    ids: torch.Tensor                  # (B, T) windows of whole lines
    queries: list[list[tuple[int, int, int]]] = field(default_factory=list)  # per window: (query, source, target id)


def build_probe(task: Task, tokenizer, block_size: int, n_lines: int = 200, seed: int = 12345) -> Probe:
    """Fresh lines packed into windows. Each query position predicts an answer character; `source` is where
    that character sits in the source part of the same line."""
    lines = make_lines(task, n_lines, seed)
    windows, queries, cur, cur_q = [], [], [], []
    for line in lines:
        ids = tokenizer.encode(line)
        if len(ids) > block_size:
            raise ValueError(f"block_size {block_size} cannot hold one line of {len(ids)} tokens")
        if len(cur) + len(ids) > block_size:
            windows.append(cur)
            queries.append(cur_q)
            cur, cur_q = [], []
        start = len(cur)
        n = line.index(SEP)
        source, answer = line[:n], line[n + 1:-1]
        for k, ch in enumerate(answer):
            cur_q.append((start + n + k, start + source.index(ch), ids[n + 1 + k]))  # query sits one before
        cur += ids
    if cur:
        windows.append(cur)
        queries.append(cur_q)
    width = max(len(w) for w in windows)
    pad = tokenizer.encode(END)[0]
    ids = torch.tensor([w + [pad] * (width - len(w)) for w in windows])
    return Probe(ids, queries)


@torch.no_grad()
def answer_accuracy(model: GPT, probe: Probe, heads=()) -> float:
    """Fraction of answer characters predicted exactly (argmax), with `heads` zeroed."""
    pred = logits_with_ablation(model, probe.ids, heads).argmax(-1)
    hits = [int(pred[b, q] == t) for b, qs in enumerate(probe.queries) for q, _, t in qs]
    return sum(hits) / max(1, len(hits))


@torch.no_grad()
def pointer_scores(model: GPT, probe: Probe) -> torch.Tensor:
    """(L, H): mean attention from each answer query to the source position of the character it must output."""
    patterns = attention_patterns(model, probe.ids)  # (B, L, H, T, T)
    total = torch.zeros(patterns.shape[1:3])
    count = 0
    for b, qs in enumerate(probe.queries):
        for q, s, _ in qs:
            total += patterns[b, :, :, q, s]
            count += 1
    return total / max(1, count)


@dataclass
class CheckResult:
    task: str
    accuracy: float
    chance: float
    accuracy_without_attention: float  # all heads zeroed: what the embeddings alone manage
    pointer: torch.Tensor           # (L, H)
    best_pointer: tuple[int, int, float]
    passed: bool
    verdict: str


def check(model: GPT, tokenizer, task: str | Task) -> CheckResult:
    """Did the model learn the task, and did it grow the circuit it should have?"""
    task = get_task(task) if isinstance(task, str) else task
    probe = build_probe(task, tokenizer, model.config.block_size)
    acc = answer_accuracy(model, probe)
    blind = answer_accuracy(model, probe, all_heads(model))
    chance = 1 / 4 if task.groups else 1 / len(ALPHABET)  # a letter's group is guessable without looking back
    pointer = pointer_scores(model, probe)
    best = strongest_head(pointer)
    grown = best[2] >= task.pointer_threshold
    learned = acc >= 0.8 and acc - blind >= 0.3  # ... and attention is what made it possible
    passed = learned and grown
    parts = [f"answer accuracy {acc:.0%} (chance {chance:.0%}; {blind:.0%} with every head removed)",
             f"best pointer head L{best[0]}H{best[1]} puts {best[2]:.0%} of its attention on the right source letter"]
    verdict = ("Grown: " if passed else "Not (yet) grown: ") + "; ".join(parts) + "."
    return CheckResult(task.name, acc, chance, blind, pointer, best, passed, verdict)
