"""`python -m gpt.sample RUN_DIR --prompt ...`: continue a prompt with a trained run."""
from __future__ import annotations

import argparse
import sys

from gpt.generate import GenerationError, stream_text
from gpt.runs import RunError, load_run
from gpt.tokenizers import TokenizerError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gpt.sample", description=__doc__)
    p.add_argument("run_dir")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    p.add_argument("--max-new-tokens", type=int, default=500)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", default=None, help="stop once this string has been generated")
    p.add_argument("--step", type=int, default=None, help="use the snapshot taken at this training step")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    try:
        run = load_run(args.run_dir, step=args.step, device=args.device)
        sys.stdout.write(args.prompt)
        for tok in stream_text(run.model, run.tokenizer, args.prompt, args.max_new_tokens, stop=args.stop,
                               temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                               greedy=args.greedy, seed=args.seed):
            sys.stdout.write(tok.text)
            sys.stdout.flush()
        sys.stdout.write("\n")
    except (RunError, TokenizerError, GenerationError) as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
