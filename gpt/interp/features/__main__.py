"""`python -m gpt.interp.features` (console script `gpt-features`): see gpt/interp/features/cli.py."""
from gpt.interp.features.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
