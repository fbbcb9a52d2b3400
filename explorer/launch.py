"""`gpt-explorer`: launch the app exactly as scripts/app does (`streamlit run explorer/app.py`), forwarding flags.

It runs from the project folder, so the safe server settings in .streamlit/config.toml apply.
`gpt-explorer report RUN_DIR --out FILE` writes a run's offline HTML report instead (explorer/report.py).
`gpt-explorer --classroom [...]` serves a class (explorer/classroom/policy.py; its flags are CLASSROOM_HELP below).
"""
from __future__ import annotations

import os
import secrets
import socket
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# classroom flag -> Settings field (whole numbers); --share-runs, --allow-network and --max-jobs are handled apart
CLASSROOM_CAPS = {"--max-steps": "max_steps", "--max-params": "max_params", "--max-upload-mb": "max_upload_mb",
                  "--learner-quota-mb": "learner_quota_mb", "--total-quota-mb": "total_quota_mb"}
CLASSROOM_HELP = """classroom mode (gpt-explorer --classroom [flags] [streamlit flags]):
  --max-steps N          training steps per learner run (default 2000)
  --max-params N         model size in parameters (default 2000000)
  --max-upload-mb N      uploaded or pasted corpus size (default 5)
  --learner-quota-mb N   disk for one learner's runs (default 200)
  --total-quota-mb N     disk for all learners' runs (default 4000)
  --max-jobs N           training jobs at once; the rest wait in a queue (default: one per two cores)
  --share-runs           learners see each other's runs (read-only); the teacher can switch it in the sidebar
  --allow-network        required with --server.address other than 127.0.0.1/localhost
  --replica              another server of a class already started on the same checkpoints folder (a scale-out,
                         scripts/classroom-cluster): keeps that class's settings and teacher token
The teacher's token is printed at launch; enter it in the sidebar's Teacher box (never put it in a URL)."""


class LaunchError(ValueError):
    """A launch request that is refused; the message says why and what to type instead."""


def _flag_value(args: list[str], flag: str) -> str | None:
    """The value of a streamlit flag given as `--flag value` or `--flag=value` (the last one wins)."""
    found = None
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith(flag + "="):
            found = arg.split("=", 1)[1]
    return found


def parse_classroom(args: list[str]) -> tuple[dict, bool, int | None, list[str]]:
    """Split `--classroom ...` arguments into (Settings fields, --allow-network, --max-jobs, streamlit's flags).
    A bad value raises LaunchError naming the flag."""
    settings, allow_network, max_jobs, rest = {}, False, None, []
    it = iter(args)
    for arg in it:
        flag, _, inline = arg.partition("=")
        if flag in (*CLASSROOM_CAPS, "--max-jobs"):
            value = inline or next(it, "")
            if not value.isdigit() or int(value) < 1:
                raise LaunchError(f"{flag} needs a whole number of at least 1, not {value!r}")
            if flag == "--max-jobs":
                max_jobs = int(value)
            else:
                settings[CLASSROOM_CAPS[flag]] = int(value)
        elif arg == "--share-runs":
            settings["share_runs"] = True
        elif arg == "--allow-network":
            allow_network = True
        elif arg != "--classroom":
            rest.append(arg)
    return settings, allow_network, max_jobs, rest


def classroom_server_flags(rest: list[str], allow_network: bool, max_upload_mb: int) -> list[str]:
    """Streamlit's flags for a class: XSRF protection and CORS stay on, uploads are capped by the teacher's
    limit, and an address other than loopback needs --allow-network."""
    for flag in ("--server.enableXsrfProtection", "--server.enableCORS"):
        if (_flag_value(rest, flag) or "true").lower() != "true":
            raise LaunchError(f"classroom mode keeps {flag} on; remove that flag")
    address = _flag_value(rest, "--server.address") or "127.0.0.1"
    if address not in LOOPBACK and not allow_network:
        raise LaunchError(f"--server.address {address} lets other machines reach the app; add --allow-network "
                          "to mean it, or leave the address out (127.0.0.1: learners tunnel in, README)")
    extra = ["--server.enableXsrfProtection", "true", "--server.enableCORS", "true",
             "--server.maxUploadSize", str(max_upload_mb)]
    if address not in LOOPBACK and _flag_value(rest, "--browser.serverAddress") is None:
        extra += ["--browser.serverAddress", socket.gethostname() if address in ("0.0.0.0", "::") else address]
    return rest + extra


def start_classroom(args: list[str]) -> list[str]:
    """Write the teacher's settings (with a fresh token's digest), switch the app into classroom mode (env), print
    the token, the address and any warning; returns the flags for streamlit."""
    from explorer.classroom import policy as classroom
    replica = "--replica" in args
    settings_kw, allow_network, max_jobs, rest = parse_classroom([a for a in args if a != "--replica"])
    if replica:
        path = classroom.class_dir() / classroom.SETTINGS
        if settings_kw or not path.is_file():
            raise LaunchError("--replica joins a class already started on this checkpoints folder: start the first "
                              "server without it (its flags set the class's limits), then the replicas with "
                              "--classroom --replica only")
        settings = classroom.load_settings()
        flags = classroom_server_flags(rest, allow_network, settings.max_upload_mb)
        os.environ[classroom.ENV] = "1"
        if max_jobs:
            os.environ["GPT_EXPLORER_MAX_JOBS"] = str(max_jobs)
        print(f"GPT Explorer classroom replica (settings: {path}); the teacher token is the first server's.")
        return flags
    token = secrets.token_urlsafe(12)
    settings = classroom.Settings(**settings_kw, teacher_token_sha256=classroom.token_digest(token))
    flags = classroom_server_flags(rest, allow_network, settings.max_upload_mb)
    path = classroom.save_settings(settings)
    os.environ[classroom.ENV] = "1"
    if max_jobs:
        os.environ["GPT_EXPLORER_MAX_JOBS"] = str(max_jobs)
    address = _flag_value(flags, "--server.address") or "127.0.0.1"
    host = _flag_value(flags, "--browser.serverAddress") if address not in LOOPBACK else "127.0.0.1"
    url = f"http://{host}:{_flag_value(flags, '--server.port') or 8501}"
    print(f"GPT Explorer classroom mode (settings: {path})\n"
          f"  Teacher token: {token}\n"
          "  Enter it in the sidebar's Teacher box; do not share it or put it in a link.\n"
          f"  Learners open: {url}")
    if address not in LOOPBACK:
        print(f"  WARNING: listening on {address}: anyone who can reach this machine's port can use the app. "
              "There is no TLS and no login beyond the names learners choose; use it on a network you trust, "
              "or keep 127.0.0.1 and a reverse proxy with authentication (README, Serving on a network).")
    return flags


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["report"]:
        from explorer.report import main as report_main
        return report_main(args[1:])
    if args[:1] in (["-h"], ["--help"]):
        print("usage: gpt-explorer [streamlit run flags, e.g. --server.port 8502]\n"
              "       gpt-explorer --classroom [classroom flags] [streamlit run flags]\n"
              "       gpt-explorer report RUN_DIR --out FILE.html\n\n"
              "Launches GPT Explorer on http://127.0.0.1:8501 (the shipped model opens first), or writes a run's\n"
              "offline HTML report.\n\n" + CLASSROOM_HELP)
        return 0
    from streamlit.web import cli

    os.chdir(PROJECT)
    if "--classroom" in args:
        try:
            args = start_classroom(args)
        except (LaunchError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    sys.argv = ["streamlit", "run", str(PROJECT / "explorer" / "app.py"), *args]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
