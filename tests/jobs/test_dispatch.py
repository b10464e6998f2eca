"""The dispatcher with a fake backend and clock: model affinity, bounded look-ahead, a dead worker's job
retried, cancel (pending, cooperative, killed), a dead dispatcher's jobs recovered, events and files kept."""

from __future__ import annotations

import json

import pytest

from app.jobs import JobStore
from app.jobs.dispatch import LOST, Dispatcher


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeBackend:
    """Workers with a memory of keys: a job's keys already seen are `cached`, the others `finished` (and
    counted in `ran`). A job's meta may ask its worker to die (`die`: times) or ignore cancel (`stuck`)."""

    def __init__(self, names, store) -> None:
        self.names = list(names)
        self.store = store
        self.memory = {n: set() for n in names}
        self.current: dict[str, dict] = {}
        self.ran: list[tuple[str, str]] = []  # (worker, key) each time a node ran
        self.cancelled: list[str] = []
        self.killed: list[str] = []
        self.dead: dict[int, int] = {}
        self.out: list[tuple[str, dict]] = []

    def submit(self, worker, graph, targets, settings) -> None:
        self.current[worker] = json.loads(graph)

    def events(self, timeout):
        out, self.out = self.out, []
        for worker, job in list(self.current.items()):
            if job.get("stuck"):
                continue
            if self.dead.get(job["id"], 0) < job.get("die", 0):
                self.dead[job["id"]] = self.dead.get(job["id"], 0) + 1
                self.memory[worker] = set()
                del self.current[worker]
                out.append((worker, {"event": LOST, "error": "killed by the test"}))
                continue
            for key in job["keys"]:
                kind = "cached" if key in self.memory[worker] else "finished"
                if kind == "finished":
                    self.ran.append((worker, key))
                self.memory[worker].add(key)
                out.append((worker, {"event": kind, "node": key, "key": key}))
            out.append((worker, {"event": "output", "node": "save", "path": f"/out/{job['id']}.png"}))
            out.append((worker, {"event": "run_done", "status": "ok", "problems": [], "errors": {}}))
            del self.current[worker]
        return out

    def cancel(self, worker) -> None:
        self.cancelled.append(worker)
        job = self.current.get(worker)
        if job is not None and not job.get("stuck"):
            del self.current[worker]
            self.out.append(
                (worker, {"event": "run_done", "status": "cancelled", "problems": [], "errors": {}})
            )

    def kill(self, worker) -> None:
        self.killed.append(worker)
        if self.current.pop(worker, None) is not None:
            self.memory[worker] = set()
            self.out.append((worker, {"event": "run_done", "status": "killed", "problems": [], "errors": {}}))

    def close(self) -> None:
        pass


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    jobs = JobStore(tmp_path / "jobs.sqlite", clock)
    yield jobs
    jobs.close()


def _enqueue(store, specs):
    graphs = [json.dumps({"id": i, **spec}) for i, spec in enumerate(specs)]
    return store.add_batch(graphs, source="test", metas=[{"keys": s["keys"]} for s in specs])[1]


def _dispatcher(store, backend, clock, **kw):
    return Dispatcher(store, backend, keys=lambda job: set(job.meta["keys"]), clock=clock, **kw)


def _prompt_sweep(prompts=4, seeds=4):
    return [{"keys": ["model", f"prompt{p}", f"sample{p}.{s}"]} for p in range(prompts) for s in range(seeds)]


def test_affinity_encodes_each_prompt_fewer_times_than_round_robin(store, clock, tmp_path):
    counts = {}
    for affinity in (True, False):
        jobs = JobStore(tmp_path / f"{affinity}.sqlite", clock)
        ids = _enqueue(jobs, _prompt_sweep())
        backend = FakeBackend(["a", "b"], jobs)
        dispatcher = _dispatcher(jobs, backend, clock, affinity=affinity)
        dispatcher.run(ids)
        assert all(jobs.get(i).status == "done" for i in ids)
        counts[affinity] = sum(1 for _, key in backend.ran if key.startswith("prompt"))
        loads = sum(1 for _, key in backend.ran if key == "model")
        assert loads == 2  # each worker loads the model once
        jobs.close()
    assert counts == {True: 4, False: 8}  # with affinity each prompt is encoded once


def test_a_warm_worker_takes_a_later_job_that_shares_its_model_and_the_head_cannot_starve(store, clock):
    ids = _enqueue(store, [{"keys": ["model1", "x"]}, {"keys": ["model2", "y"]}, {"keys": ["model2", "z"]},
                           {"keys": ["model2", "w"]}])  # fmt: skip
    backend = FakeBackend(["a"], store)
    backend.memory["a"] = {"model2"}
    dispatcher = _dispatcher(store, backend, clock, lookahead=2)
    dispatcher.warm["a"] = {"model2"}
    order = []
    while len(order) < 4:
        dispatcher.step()
        order += [i for i in ids if store.get(i).status == "done" and i not in order]
    assert order[0] == ids[1]  # model2 is warm: the second job jumps the first
    assert order.index(ids[0]) <= 2  # passed twice (lookahead 2), the head runs next


def test_a_dead_worker_gives_its_job_back_until_its_attempts_run_out(store, clock):
    ids = _enqueue(store, [{"keys": ["m", "a"], "die": 1}, {"keys": ["m", "b"], "die": 5}])
    backend = FakeBackend(["w"], store)
    dispatcher = _dispatcher(store, backend, clock)
    dispatcher.run(ids)
    first, second = store.get(ids[0]), store.get(ids[1])
    assert first.status == "done" and first.attempt == 2
    assert second.status == "failed" and "killed by the test" in second.error and second.attempt == 3
    kinds = [e["event"] for _, e in store.events(ids[0])]
    assert kinds.count("job_started") == 2 and "job_lost" in kinds and kinds[-1] == "job_done"
    assert dispatcher.stats.retried == 3 and dispatcher.stats.done == 1


def test_cancel_pending_running_and_stuck_jobs(store, clock):
    ids = _enqueue(store, [{"keys": ["m"], "stuck": True}, {"keys": ["m", "b"]}, {"keys": ["m", "c"]}])
    backend = FakeBackend(["w"], store)
    dispatcher = _dispatcher(store, backend, clock, kill_after=10.0)
    dispatcher.step()
    assert store.get(ids[0]).status == "running"
    assert store.cancel(ids[1]) == "cancelled"  # pending: ends now, never runs
    assert store.cancel(ids[0]) == "requested"
    dispatcher.step()
    assert backend.cancelled == ["w"] and store.get(ids[0]).status == "running"  # it ignores the request
    clock.now += 11
    dispatcher.step()
    dispatcher.step()
    assert backend.killed == ["w"] and store.get(ids[0]).status == "cancelled"
    dispatcher.run(ids)
    assert [store.get(i).status for i in ids] == ["cancelled", "cancelled", "done"]
    assert [j for w, j in backend.ran if j == "b"] == []


def test_a_new_dispatcher_finishes_what_a_dead_one_had_claimed(store, clock):
    ids = _enqueue(store, [{"keys": ["m", "a"], "stuck": True}])
    first = _dispatcher(store, FakeBackend(["w"], store), clock, lease=30.0)
    first.step()
    assert store.get(ids[0]).status == "running"  # and then the first dispatcher's process is gone
    store._db.execute("UPDATE jobs SET graph = ?", (json.dumps({"id": 0, "keys": ["m", "a"]}),))
    second = _dispatcher(store, FakeBackend(["w"], store), clock, lease=30.0)
    second.step()
    assert store.get(ids[0]).status == "running"  # the lease still holds: not taken twice
    clock.now += 31
    second.run(ids)
    job = store.get(ids[0])
    assert job.status == "done" and job.attempt == 2


def test_events_and_files_are_kept_per_job(store, clock):
    ids = _enqueue(store, [{"keys": ["m", "a"]}, {"keys": ["m", "b"]}])
    seen = []
    dispatcher = _dispatcher(
        store, FakeBackend(["w"], store), clock, on_event=lambda job, e: seen.append((job.id, e))
    )
    dispatcher.run(ids)
    second = [e for _, e in store.events(ids[1])]
    assert [e["event"] for e in second] == ["job_started", "cached", "finished", "output", "job_done"]
    assert [a.path for a in store.artifacts(ids[1])] == [f"/out/{1}.png"]
    assert (ids[1], {"event": "job_done", "status": "done"}) in seen
    assert dispatcher.stats.cached == 1 and dispatcher.stats.ran == 3


def test_a_job_whose_worker_dies_after_a_cancel_request_is_cancelled_not_run_again(store, clock):
    ids = _enqueue(store, [{"keys": ["m"], "stuck": True}])
    backend = FakeBackend(["w"], store)
    dispatcher = _dispatcher(store, backend, clock)
    dispatcher.step()
    assert store.cancel(ids[0]) == "requested"
    backend.current.clear()
    backend.out.append(("w", {"event": LOST, "error": "SIGKILL"}))
    dispatcher.step()
    assert store.get(ids[0]).status == "cancelled" and dispatcher.running == {}
