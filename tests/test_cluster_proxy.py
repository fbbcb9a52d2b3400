"""scripts/classroom-cluster: two classroom replicas behind nginx on loopback (issue 30). Simulated learners
(bench/st_client.py, as a browser: the page first, then the websocket with its cookies) reach both replicas through
the proxy, each stays on one replica for its page loads and its websocket, and their pages run without error."""
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from st_client import Learner  # noqa: E402

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx not installed (scripts/setup dev installs it)")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def replica_of(url: str, cookies: dict) -> str:
    request = urllib.request.Request(url, headers={"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.headers["X-GX-Replica"]


@pytest.fixture
def cluster(tmp_path):
    root = tmp_path / "checkpoints"
    root.mkdir()
    shipped = ROOT / "checkpoints" / "shakespeare-char"
    shutil.copytree(shipped, root / shipped.name, ignore=shutil.ignore_patterns("resume.safetensors", ".tmp-*"))
    port, log = free_port(), tmp_path / "cluster.log"
    env = {**os.environ, "GPT_EXPLORER_CHECKPOINTS": str(root), "GPT_EXPLORER_CACHE": str(tmp_path / "cache"),
           "TMPDIR": str(tmp_path)}
    with open(log, "w") as out:
        proc = subprocess.Popen([str(ROOT / "scripts" / "classroom-cluster"), "--port", str(port), "--max-jobs", "1"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 240
        while "learners open" not in log.read_text():
            assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_learners_through_the_proxy_reach_both_replicas_and_each_stays_on_one(cluster):
    url, log = cluster

    async def learners(n: int):
        found = []
        sessions = [Learner(url, sticky=True, timeout_s=180) for _ in range(n)]
        for s in sessions:
            await s.__aenter__()
        try:
            opened = await asyncio.gather(*(s.open() for s in sessions))
            moved = await asyncio.gather(*(s.rerun("attention") for s in sessions))
            for s, first, second in zip(sessions, opened, moved):
                found.append((s.cookies, s.handshake_headers.get("x-gx-replica"), first.exceptions + second.exceptions))
        finally:
            for s in sessions:
                await s.__aexit__(None, None, None)
        return found

    found = asyncio.run(learners(12))
    for cookies, websocket_replica, problems in found:
        assert problems == []
        assert websocket_replica, "the proxy did not say which replica took the websocket"
        # the same browser's later page loads and requests go to the replica that holds its websocket
        assert {replica_of(url + "/", cookies), replica_of(url + "/_stcore/health", cookies)} == {websocket_replica}
    per_replica = Counter(replica for _, replica, _ in found)
    assert len(per_replica) == 2, per_replica        # 12 random cookies all on one of two: p = 2 / 4096
    assert "Teacher token:" in log.read_text()       # the first replica made the class; the second kept it
