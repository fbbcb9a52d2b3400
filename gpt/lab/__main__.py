"""`python -m gpt.lab` (console script `gpt-lab`): the training-dynamics experiments.

    python -m gpt.lab induction --out DIR      # 2-layer vs 1-layer attention-only models: induction heads form
    python -m gpt.lab grokking --out DIR [--seed N]   # a + b mod 113: memorise, then generalise

Each writes ordinary run folders and ends with an auto-check; exit code 0 = ran (the verdict is printed and
saved), 1 = crashed, 2 = bad input.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import asdict, fields
from pathlib import Path

from gpt import runs
from gpt.config import ConfigError

# optional overrides of each experiment's config dataclass: (flag, type or a tuple of choices, help); unset = the
# dataclass default
INDUCTION_FLAGS = [("--max-iters", int, None), ("--block-size", int, None), ("--n-embd", int, None),
                   ("--batch-size", int, None), ("--eval-interval", int, None), ("--seed", int, None),
                   ("--corpus", str, "built-in corpus name or a text file (default tiny-shakespeare)"),
                   ("--tokenizer", ("char", "bpe"), "default bpe"),
                   ("--vocab-size", int, "BPE vocabulary size (default 512)"), ("--lr", float, None),
                   ("--repeat", ("passages", "lines", "none"), "what the training text says twice (default passages)"),
                   ("--passage-chars", int, "a repeated passage's least length in characters (default 30)")]
GROKKING_FLAGS = [("--seed", int, None), ("--p", int, None), ("--max-steps", int, None), ("--lr", float, None),
                  ("--weight-decay", float, None), ("--train-fraction", float, None), ("--d-model", int, None),
                  ("--eval-interval", int, None), ("--snapshot-interval", int, None), ("--patience", int, None),
                  ("--threads", int, None), ("--dtype", ("auto", "float32", "bfloat16"), None)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gpt.lab", description="Training-dynamics experiments.")
    sub = p.add_subparsers(dest="experiment", required=True)
    ind = sub.add_parser("induction", help="induction heads form in a 2-layer, not a 1-layer, attention-only model")
    ind.add_argument("--out", required=True, help="folder for the two run folders and lab.json")
    grok = sub.add_parser("grokking", help="grokking on a + b mod p (Nanda et al. 2023)")
    grok.add_argument("--out", required=True, help="the run folder to write")
    for parser, flags in ((ind, INDUCTION_FLAGS), (grok, GROKKING_FLAGS)):
        for flag, kind, help_text in flags:
            if isinstance(kind, tuple):
                parser.add_argument(flag, choices=kind, help=help_text)
            else:
                parser.add_argument(flag, type=kind, help=help_text)
    return p


def overrides(args, cls) -> dict:
    return {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.experiment == "induction":
            from gpt.lab.induction_lab import InductionLabConfig, run
            result = run(args.out, InductionLabConfig(**overrides(args, InductionLabConfig)))
            return 0 if result is not None else 1
        from gpt.lab.grokking import GrokConfig, train
        cfg = GrokConfig(**overrides(args, GrokConfig))
        every = max(1, 500 // cfg.eval_interval) * cfg.eval_interval

        def echo(row):
            if row["step"] % every == 0:
                print(f"step {row['step']:>5}  train acc {row['train_acc']:.3f}  test acc {row['test_acc']:.3f}  "
                      f"weight norm {row['weight_norm']:.1f}  key frequencies {row['key_frequencies']}", file=sys.stderr)
        stop = {"requested": False}  # Stop in the app sends SIGTERM: finish the step, save, report "stopped"
        signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
        result = train(args.out, cfg, echo, should_stop=lambda: stop["requested"])
        print(result.verdict)
        print(json.dumps(asdict(result)))
        return 0
    except (ConfigError, runs.RunError, OSError) as e:
        if args.experiment == "grokking" and Path(args.out).is_dir():
            try:
                runs.write_status(args.out, state="failed", error=str(e))
            except OSError:
                pass
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        runs.release_locks()


if __name__ == "__main__":
    sys.exit(main())
