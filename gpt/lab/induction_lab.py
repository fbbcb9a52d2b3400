"""The induction-head lab: a 2-layer and a 1-layer attention-only model trained side by side on tiny
Shakespeare with every passage of a few lines said twice (repeated_passages; each model an ordinary run folder,
trained by its own `python -m gpt.train` process), then checked
against Olsson et al. 2022: the 2-layer model forms an induction head (score >= 0.5) in a phase change, with
the in-context-learning score dropping at the same time; the 1-layer model cannot (an induction head needs a
previous-token head in an earlier layer to compose with), so none of its heads exceeds 0.2.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gpt import runs
from gpt.config import ConfigError
from gpt.data import load_corpus

MODELS = {"attn-2layer": 2, "attn-1layer": 1}  # run folder name under --out -> attention layers
CORPUS_FILE = "corpus-repeated.txt"
REPEATS = ("passages", "lines", "none")  # InductionLabConfig.repeat: what the training text says twice
STATUS_KIND = "induction-lab"


@dataclass
class InductionLabConfig:
    corpus: str = "tiny-shakespeare"
    repeat: str = "passages"     # what is said twice: "passages" (repeated_passages), "lines" (repeated_corpus), "none"
    passage_chars: int = 30       # a passage: whole lines, at least this many characters (~18-32 BPE-512 tokens)
    tokenizer: str = "bpe"        # word pieces: "the token after the previous occurrence of this one" is then
    vocab_size: int = 512         # unambiguous far more often than with single characters
    pos_embedding: str = "rotary"  # relative positions: previous-token heads form sooner than with a table
    n_embd: int = 128             # room in the residual stream for the token and the previous token's identity
    n_head: int = 4
    block_size: int = 64          # a passage and its repeat are ~36-64 tokens: a context of 64 holds most
    batch_size: int = 32
    max_iters: int = 3000           # the phase change comes at ~500-1,000 steps; the rest lets the 1-layer settle
    lr: float = 6e-3
    warmup_iters: int = 30
    eval_interval: int = 50
    eval_iters: int = 4
    seed: int = 1337
    threads_per_model: int = 1
    extra: dict = field(default_factory=dict)  # more gpt.train options for both (tests: tiny settings)

    def train_args(self, out: Path, n_layer: int, corpus: str) -> list[str]:
        args = ["--corpus", corpus, "--out", str(out), "--arch", "multi_head", "--n-layer", str(n_layer),
                "--n-head", str(self.n_head), "--n-embd", str(self.n_embd), "--block-size", str(self.block_size),
                "--batch-size", str(self.batch_size), "--max-iters", str(self.max_iters), "--lr", str(self.lr),
                "--min-lr", str(self.lr / 10), "--warmup-iters", str(self.warmup_iters),
                "--eval-interval", str(self.eval_interval), "--eval-iters", str(self.eval_iters),
                "--seed", str(self.seed), "--sample-tokens", "0", "--threads", str(self.threads_per_model), "--quiet",
                "--tokenizer", self.tokenizer, "--pos-embedding", self.pos_embedding]
        if self.tokenizer == "bpe":
            args += ["--vocab-size", str(self.vocab_size)]
        for key, value in self.extra.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        return args


def repeated_corpus(text: str) -> str:
    """The corpus with every line said twice ("Before we proceed any further, hear me speak.\n" then the same line
    again): wherever a line repeats, the model can predict it by copying from a few tokens back, which only an
    induction circuit does (find the earlier occurrence of the current token, read the token that followed it).

    Why: in plain Shakespeare copying from earlier in the context pays off rarely, and no 2-layer model formed an
    induction head within this lab's budget; with every speech said twice (most speeches are longer than the
    context) still none (measured: char-level and BPE, learned and rotary positions, best head 0.02-0.09 after
    1,500-2,500 steps). With every line said twice the repeat is always in view, copying is worth a lot, and the 2-layer
    model forms an induction head in a phase change within ~1,000 steps (bench numbers in the README). What is
    learned is still Shakespeare; the lines' lengths vary, so no fixed-offset head can fake copying; and a
    1-layer model still cannot copy (it has no earlier layer to find "the token after the previous occurrence of
    mine"). The lab now says passages twice instead: a head learned from lines copies from the nearest
    occurrence, which the one induction score does not count (0.22; see repeated_passages)."""
    lines = [line if line.endswith("\n") else line + "\n" for line in text.splitlines(keepends=True)]
    return "".join(line + line for line in lines)


def repeated_passages(text: str, min_chars: int = 30) -> str:
    """The corpus cut into passages of whole lines, each at least min_chars long, each said twice (passage,
    passage, next passage, next passage, ...): the repeat is a passage back, not a line back.

    Why: the induction score is measured on held-out passages said twice (gpt/lab/probes.py: 32 tokens at block
    64) and counts only the attention to the token after the occurrence *one passage back*. With every line said
    twice (repeated_corpus) the model learned to copy from the nearest earlier occurrence, the line just before
    (a 10-20 token reach), and the probe's passages, cut from that doubled text, hold a line and its repeat inside
    one copy, so the nearest occurrence is the probe's copy for only ~40% of the second copy's tokens: its head
    scored 0.22 (peak 0.26). With passages of 30+ characters (BPE 512: 18-32 tokens, median ~22) the copy sits
    about as far back as in the probe, nearer occurrences of a token (a second "the" in the passage) are the
    wrong ones to copy from, and copying still pays on ~30% of a 64-token context's positions (every line
    twice: ~35%). Measured (default config, seed 1337): the 2-layer model's head L1H3 jumps 0.07 -> 0.55 between
    steps 600 and 900, peaks at 0.60 and ends at 0.52; the 1-layer's best head 0.02. Longer passages leave too
    little to copy within the context: 50+ characters (26-47 tokens, ~20% of positions) formed no induction head
    in 3,000 steps (0.06, though a previous-token head formed), nor with half of each batch's lines said twice
    as well (0.19); whole speeches said twice outgrow the context (best 0.07-0.18). Whole lines vary in length,
    so the repeat distance varies by ~15 tokens and no fixed-offset head (the only kind a 1-layer model can
    build) can fake the copying."""
    passages, current = [], ""
    for line in text.splitlines(keepends=True):
        current += line if line.endswith("\n") else line + "\n"
        if len(current) >= min_chars:
            passages.append(current)
            current = ""
    if current:
        passages.append(current)
    return "".join(p + p for p in passages)


@dataclass
class ModelSummary:
    run: str
    n_layer: int
    induction_score: float | None
    induction_head: str | None
    prev_token_score: float | None
    icl_score: float | None
    phase_change_step: int | None   # the evaluation where the induction score rose fastest


def eval_rows(run_dir: Path) -> list[dict]:
    return [r for r in runs.read_jsonl(run_dir / runs.METRICS) if "induction_score" in r]


def phase_change_step(rows: list[dict]) -> int | None:
    """The step at which the induction score rose the most between two evaluations (None if it never rose by
    0.1): where the curves are annotated."""
    best, step = 0.1, None
    for prev, cur in zip(rows, rows[1:]):
        rise = cur["induction_score"] - prev["induction_score"]
        if rise > best:
            best, step = rise, cur["step"]
    return step


def summarize(run_dir: Path, n_layer: int) -> ModelSummary:
    rows = eval_rows(run_dir)
    last = rows[-1] if rows else {}
    return ModelSummary(run_dir.name, n_layer, last.get("induction_score"), last.get("induction_head"),
                        last.get("prev_token_score"), last.get("icl_score"), phase_change_step(rows))


ICL_MARGIN = 0.05  # nats: how much lower the 2-layer's ICL score must be to count as "clearly" more ICL


def check(two: ModelSummary, one: ModelSummary) -> tuple[bool, list[str]]:
    """The auto-check; returns (passed, one sentence per criterion)."""
    lines, ok = [], True
    if two.induction_score is None or one.induction_score is None:
        return False, ["no evaluations with induction scores were logged"]
    c1 = two.induction_score >= 0.5
    lines.append(f"{'PASS' if c1 else 'FAIL'}: the 2-layer model's strongest induction head {two.induction_head} "
                 f"scores {two.induction_score:.2f} (needs >= 0.5)")
    c2 = two.icl_score is not None and one.icl_score is not None and two.icl_score <= one.icl_score - ICL_MARGIN
    lines.append(f"{'PASS' if c2 else 'FAIL'}: in-context learning: ICL score {two.icl_score:+.3f} (2-layer) vs "
                 f"{one.icl_score:+.3f} (1-layer) nats; the 2-layer's must be lower (more negative: later tokens "
                 f"predicted better) by at least {ICL_MARGIN}")
    c3 = one.induction_score <= 0.2
    lines.append(f"{'PASS' if c3 else 'FAIL'}: the 1-layer model's strongest induction head {one.induction_head} "
                 f"scores {one.induction_score:.2f} (needs <= 0.2)")
    ok = c1 and c2 and c3
    return ok, lines


def run(out: str | Path, cfg: InductionLabConfig | None = None, echo=print) -> dict:
    """Train both models in parallel into out/attn-2layer and out/attn-1layer; write out/lab.json with the
    verdict; returns it. The lab folder's status.json names this process, so the app counts it as one job."""
    cfg = cfg or InductionLabConfig()
    if cfg.repeat not in REPEATS:
        raise ConfigError(f"repeat must be one of {', '.join(REPEATS)} (got {cfg.repeat!r})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    existing = [name for name in MODELS if (out / name / runs.CONFIG).exists()]
    if existing:
        raise runs.RunError(f"{out} already holds the lab's runs ({', '.join(existing)}); pick a new --out")
    runs.write_status(out, state="running", pid=os.getpid(), kind=STATUS_KIND, step=0, max_iters=cfg.max_iters,
                      error=None, started_at=time.time())
    t0 = time.perf_counter()
    corpus = cfg.corpus
    if cfg.repeat != "none":
        text, _ = load_corpus(cfg.corpus)
        repeated = repeated_passages(text, cfg.passage_chars) if cfg.repeat == "passages" else repeated_corpus(text)
        runs.atomic_write_text(out / CORPUS_FILE, repeated)
        corpus = str((out / CORPUS_FILE).resolve())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                      os.environ.get("PYTHONPATH")]))}
    procs = {}
    for name, n_layer in MODELS.items():
        (out / name).mkdir(exist_ok=True)
        log = open(out / name / "train.log", "ab")
        procs[name] = subprocess.Popen([sys.executable, "-m", "gpt.train", *cfg.train_args(out / name, n_layer, corpus)],
                                       stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        log.close()

    def forward_stop(signum, frame):  # Stop on the lab stops both trainers (they checkpoint and exit)
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, forward_stop)
    signal.signal(signal.SIGINT, forward_stop)
    while any(p.poll() is None for p in procs.values()):
        steps = [runs.read_status(out / n).get("step") or 0 for n in MODELS]
        runs.write_status(out, step=min(steps))
        time.sleep(1.0)
    wall = time.perf_counter() - t0
    codes = {name: p.returncode for name, p in procs.items()}
    states = {name: runs.read_status(out / name).get("state") for name in MODELS}
    two, one = summarize(out / "attn-2layer", 2), summarize(out / "attn-1layer", 1)
    if all(s == "finished" for s in states.values()):
        passed, lines = check(two, one)
    else:
        passed, lines = False, [f"not every model finished: {states} (exit codes {codes})"]
    result = {"passed": passed, "checks": lines, "wall_s": round(wall, 1), "models": [asdict(two), asdict(one)],
              "config": asdict(cfg)}
    runs.atomic_write_json(out / "lab.json", result)
    runs.write_status(out, state="finished" if all(s == "finished" for s in states.values()) else "stopped",
                      eta_s=0, passed=passed)
    for line in lines:
        echo(line)
    echo(json.dumps({"passed": passed, "wall_s": round(wall, 1)}))
    return result
