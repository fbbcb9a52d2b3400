"""Two classroom servers on one checkpoints folder (scripts/classroom-cluster) share the queue, owner and quota files:
processes acting at the same time must keep them consistent (issue 30). Two processes hammer explorer/classroom's
enqueue / cancel / advance for the same learners at once; afterwards no request is lost or started twice, no run
has two owners, and no learner (nor the class) is over its disk quota."""
import json
import multiprocessing
import os
import random
from pathlib import Path

import pytest

from explorer.classroom import policy, queue
from explorer.classroom.policy import MB, Actor, Refused, Settings

LEARNERS = [Actor(f"id{i}", f"learner {i}") for i in range(4)]
SETTINGS = Settings(learner_quota_mb=1, total_quota_mb=2)       # about 3 runs a learner, 7 in the class
OPTIONS = {"max_iters": 10, "eval_interval": 10}
PARAMS = 1000                                                   # ~0.27 MB a run (policy.estimate_run_bytes)
STARTED_LOG = "started.log"


def fake_start(entry: dict, root: Path) -> Path:
    """What jobs.start_job leaves on disk, minus the trainer: the run folder (made once: a second start of the same
    request fails here), its owner, and the bytes the request reserved; one line in a log per start."""
    folder = root / entry["run"]
    folder.mkdir()                                              # FileExistsError: started twice
    if entry.get("learner"):
        (folder / policy.OWNER).write_text(json.dumps({"learner": entry["learner"], "name": entry["name"]}))
    (folder / "weights.bin").write_bytes(b"\0" * int(entry["needed_bytes"]))
    with open(root / STARTED_LOG, "a") as f:
        f.write(json.dumps({"id": entry["id"], "run": entry["run"], "learner": entry["learner"],
                            "pid": os.getpid()}) + "\n")
    return folder


def hammer(root: str, worker: int, steps: int, out: str) -> None:
    # enqueue itself starts what fits at once (queue.advance with the real start): in this forked worker, without a
    # trainer. (With the real start, these corpus-less requests failed at once, so whether a learner still had one
    # waiting, and with it whether any rule refused, hung on how the two processes interleaved.)
    queue._start = fake_start
    rng = random.Random(worker)
    accepted, cancelled, refused = [], [], 0
    for i in range(steps):
        actor = rng.choice(LEARNERS)
        action = rng.random()
        try:
            if action < 0.6:
                entry = queue.enqueue(actor, SETTINGS, f"w{worker}-{i}", OPTIONS, params=PARAMS, root=root,
                                      spawn_runner=False)
                accepted.append(entry["id"])
            elif action < 0.8:
                queue.advance(root, start=fake_start)
            else:
                mine = [e for e in queue.waiting(root) if e["learner"] == actor.learner_id]
                if mine:
                    cancelled.append(queue.cancel(actor, mine[0]["id"], root)["id"])
        except Refused:
            refused += 1     # a rule said no (one job per learner, quota, already cancelled): nothing changed
    Path(out).write_text(json.dumps({"accepted": accepted, "cancelled": cancelled, "refused": refused}))


@pytest.mark.slow
def test_two_processes_sharing_the_queue_lose_no_request_start_none_twice_and_overrun_no_quota(tmp_path):
    root = tmp_path / "checkpoints"
    root.mkdir()
    policy.save_settings(SETTINGS, root)
    ctx = multiprocessing.get_context("fork")
    outs = [tmp_path / f"worker{w}.json" for w in range(2)]
    workers = [ctx.Process(target=hammer, args=(str(root), w, 60, str(outs[w]))) for w in range(2)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=300)
        assert p.exitcode == 0, "a worker failed (see its traceback above)"
    queue.advance(root, start=fake_start)          # whatever still waits (and fits) starts now

    results = [json.loads(o.read_text()) for o in outs]
    accepted = [i for r in results for i in r["accepted"]]
    cancelled = {i for r in results for i in r["cancelled"]}
    started = [json.loads(line) for line in (root / STARTED_LOG).read_text().splitlines()]
    started_ids = [s["id"] for s in started]
    waiting_ids = {e["id"] for e in queue.read_queue(root)}
    assert len(accepted) == len(set(accepted)) and len(accepted) >= 4
    assert len(started_ids) == len(set(started_ids)), "a request was started twice"
    assert set(started_ids) <= set(accepted), "a start that no enqueue answered"
    lost = set(accepted) - set(started_ids) - cancelled - waiting_ids
    assert not lost, f"requests lost: {lost}"
    assert not (cancelled & set(started_ids)), "a request both cancelled and started"
    for s in started:   # each run is its learner's, as the owner file says
        assert policy.owner_of(root / s["run"]) == s["learner"]
    usage = policy.disk_usage(root)
    assert all(used <= SETTINGS.learner_quota_mb * MB for used in usage.values()), usage
    assert sum(usage.values()) <= SETTINGS.total_quota_mb * MB, usage
    assert sum(r["refused"] for r in results) > 0      # the rules did bite: the quotas were reached
