"""The job store: order, claims and leases, recovery after a runner dies, cancel, reorder, events and files,
restart, schema versions — with an injected clock, in milliseconds."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

import pytest

from app.jobs import JobStore, StoreProblem


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    clock = Clock()
    jobs = JobStore(tmp_path / "jobs.sqlite", clock)
    jobs.clock_ref = clock
    yield jobs
    jobs.close()


def test_jobs_run_in_queue_order_and_end_once(store):
    _, first = store.add_batch(["{1}", "{2}"], metas=[{"seed": 1}, {"seed": 2}])
    _, second = store.add_batch(["{3}"], targets=["save"])
    claimed = store.claim("a")
    assert claimed.id == first[0] and claimed.status == "running" and claimed.attempt == 1
    assert claimed.meta == {"seed": 1} and claimed.targets is None
    assert store.finish(claimed.id, "done") and not store.finish(claimed.id, "failed")  # ends once
    assert [store.claim("a").id, store.claim("b").id] == [first[1], second[0]]
    assert store.get(second[0]).targets == ["save"]
    assert store.claim("c") is None


def test_a_dead_runners_job_comes_back_until_its_attempts_are_used(store):
    _, (job,) = store.add_batch(["{}"], max_attempts=2)
    assert store.claim("a", lease_seconds=10).id == job
    store.clock_ref.now += 5
    assert store.heartbeat(job, "a", lease_seconds=10) and store.recover() == []
    store.clock_ref.now += 11  # the runner stopped renewing its lease
    assert store.recover() == [job] and store.get(job).status == "pending"
    assert not store.heartbeat(job, "a")  # the lease is no longer theirs
    assert store.claim("b", lease_seconds=10).attempt == 2
    assert not store.finish(job, "done", owner="a")  # the old runner cannot end it
    store.clock_ref.now += 11
    assert store.recover() == [] and store.get(job).status == "failed"
    assert "stopped 2 times" in store.get(job).error


def test_cancel_reorder_and_clear(store):
    _, ids = store.add_batch(["{a}", "{b}", "{c}", "{d}"])
    running = store.claim("a").id
    assert store.cancel(ids[2]) == "cancelled" and store.cancel(running) == "requested"
    assert store.get(running).cancel_requested and store.cancel(ids[2]) is None
    assert store.move(ids[3], 0) and not store.move(running, 0)
    assert [j.id for j in store.jobs(("pending",))] == [ids[3], ids[1]]
    assert [j.id for j in store.jobs()][:3] == [ids[0], ids[3], ids[1]]  # running, then pending in order
    store.finish(running, "cancelled")
    assert store.clear() == 2 and {j.id for j in store.jobs()} == {ids[1], ids[3]}
    with pytest.raises(ValueError):
        store.clear(("pending",))


def test_events_and_artifacts_replay_in_order_and_survive_a_restart(tmp_path):
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    _, (job,) = store.add_batch(["{}"])
    store.claim("a")
    for step in (1, 2, 3):
        store.add_event(job, {"event": "progress", "step": step})
    store.add_artifact(job, "/out/a.png", "save")
    store.add_artifact(job, "/out/b.png", "save")
    store.close()
    again = JobStore(path)
    assert [e["step"] for _, e in again.events(job, after=1)] == [2, 3]
    assert [(a.index, a.path) for a in again.artifacts(job)] == [(0, "/out/a.png"), (1, "/out/b.png")]
    assert again.get(job).status == "running"  # a restart keeps the job; its lease decides the rest
    again.close()


def _claim_all(path, owner, out):
    store = JobStore(path)
    claimed = []
    while (job := store.claim(owner)) is not None:
        claimed.append(job.id)
        store.finish(job.id, "done", owner=owner)
    out.put(claimed)


def test_two_processes_never_claim_the_same_job(tmp_path):
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    _, ids = store.add_batch([f"{{{i}}}" for i in range(60)])
    context = mp.get_context("spawn")
    out = context.Queue()
    workers = [context.Process(target=_claim_all, args=(path, f"w{i}", out)) for i in range(2)]
    for worker in workers:
        worker.start()
    claimed = [job for _ in workers for job in out.get(timeout=60)]
    for worker in workers:
        worker.join(30)
    assert sorted(claimed) == ids  # every job once
    assert {j.status for j in store.jobs()} == {"done"}


def test_a_newer_or_foreign_file_is_refused_with_its_name(tmp_path):
    path = tmp_path / "jobs.sqlite"
    JobStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreProblem, match="newer Nodeloom"):
        JobStore(path)
    other = tmp_path / "not.sqlite"
    other.write_bytes(b"hello, this is no database" * 100)
    with pytest.raises(StoreProblem, match="not.sqlite: not a job store"):
        JobStore(other)


def test_seed_controls_step_wrap_and_draw(tmp_path):
    import random

    from app.graph.model import Graph, Node
    from app.graph.spec import SEED_MAX
    from app.jobs import seeds
    from app.registry import default_registry

    assert seeds.next_value(5, "increment") == 6 and seeds.next_value(SEED_MAX, "increment") == 0
    assert seeds.next_value(0, "decrement") == SEED_MAX and seeds.next_value(5, "fixed") == 5
    drawn = {seeds.next_value(5, "randomize", random.Random(i)) for i in range(5)}
    assert len(drawn) == 5 and all(0 <= v < 2**32 for v in drawn)
    graph = Graph()
    graph.add_node(Node("a", "value.seed", params={"value": 3}))
    graph.add_node(Node("b", "value.seed", params={"value": 9}))
    graph.layout["seed_control"] = {"a.value": "decrement", "b.value": "nonsense"}
    registry = default_registry()
    assert seeds.seed_params(graph, registry) == [("a", "value"), ("b", "value")]
    assert seeds.advanced(graph, registry) == {("a", "value"): 2}  # an unknown mode counts as fixed
