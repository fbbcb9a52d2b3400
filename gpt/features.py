"""`python -m gpt.features`, the command's old name: the code is gpt/interp/features/cli.py (`gpt-features`,
`python -m gpt.interp.features`)."""
from gpt.interp.features.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
