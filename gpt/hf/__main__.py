"""`python -m gpt.hf` (console script `gpt-hf`): see gpt/hf/gpt2.py."""
from gpt.hf.gpt2 import main

if __name__ == "__main__":
    raise SystemExit(main())
