"""`gpt-explorer`: launch the app exactly as scripts/app does (`streamlit run explorer/app.py`), forwarding flags.

It runs from the project folder, so the safe server settings in .streamlit/config.toml apply.
`gpt-explorer report RUN_DIR --out FILE` writes a run's offline HTML report instead (explorer/report.py).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["report"]:
        from explorer.report import main as report_main
        return report_main(args[1:])
    if args[:1] in (["-h"], ["--help"]):
        print("usage: gpt-explorer [streamlit run flags, e.g. --server.port 8502]\n"
              "       gpt-explorer report RUN_DIR --out FILE.html\n\n"
              "Launches GPT Explorer on http://127.0.0.1:8501 (the shipped model opens first), or writes a run's\n"
              "offline HTML report.")
        return 0
    from streamlit.web import cli

    os.chdir(PROJECT)
    sys.argv = ["streamlit", "run", str(PROJECT / "explorer" / "app.py"), *args]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
