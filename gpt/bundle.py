"""`python -m gpt.bundle`, the command's old name (README, earlier notes): the code is gpt/runs/bundle.py (`gpt-bundle`)."""
from gpt.runs.bundle import main

if __name__ == "__main__":
    raise SystemExit(main())
