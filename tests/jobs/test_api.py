"""The HTTP API through FastAPI's test client, with a fake backend: auth, submit (sweeps, bad graphs),
job views, 404s, SSE replay from Last-Event-ID, outputs, cancel and retry, a restart on the same state."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.routes import create_app
from app.api.service import Service, StateBusy
from app.graph import serialize
from app.registry import default_registry

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = default_registry()
GRAPH = json.loads((ROOT / "graphs" / "txt2img.json").read_text())


class PictureBackend:
    """Each job 'runs' at once: events for three nodes and one picture written into the outputs folder.
    Set `hold` to keep jobs running until released."""

    def __init__(self, names=("cpu",)) -> None:
        self.names = list(names)
        self.current: dict[str, tuple[str, dict]] = {}
        self.hold = False
        self.out: list = []
        self.count = 0

    def submit(self, worker, graph, targets, settings) -> None:
        self.current[worker] = (graph, settings)

    def events(self, timeout):
        out, self.out = self.out, []
        if self.hold:
            return out
        for worker, (graph, settings) in list(self.current.items()):
            self.count += 1
            folder = Path(settings["output_dir"])
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"picture_{self.count:05d}.png"
            path.write_bytes(
                b"\x89PNG\r\n\x1a\n" + json.loads(graph)["nodes"]["prompt"]["params"]["text"].encode()
            )
            for node in ("model", "sampler"):
                out.append((worker, {"event": "started", "node": node}))
                out.append((worker, {"event": "finished", "node": node, "key": node + str(self.count)}))
            out.append((worker, {"event": "output", "node": "save", "path": str(path)}))
            out.append((worker, {"event": "run_done", "status": "ok", "problems": [], "errors": {}}))
            del self.current[worker]
        return out

    def cancel(self, worker) -> None:
        if worker in self.current:
            del self.current[worker]
            self.out.append(
                (worker, {"event": "run_done", "status": "cancelled", "problems": [], "errors": {}})
            )

    def kill(self, worker) -> None:
        self.cancel(worker)

    def close(self) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    backend = PictureBackend()
    service = Service(tmp_path / "state", REGISTRY, backend)
    service.start()
    client = TestClient(create_app(service))
    client.headers["Authorization"] = f"Bearer {service.token}"
    yield client, service, backend
    service.close()


def test_auth_is_needed_everywhere_but_health_and_the_token_file_is_private(tmp_path, server):
    client, service, _ = server
    bare = TestClient(client.app)
    assert bare.get("/v1/health").json()["status"] == "ok"
    for method, path in (
        ("get", "/v1/jobs"),
        ("get", "/v1/jobs/1"),
        ("post", "/v1/jobs"),
        ("get", "/v1/batches/1"),
    ):
        assert getattr(bare, method)(path).status_code == 401
    wrong = bare.get("/v1/jobs", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert os.stat(service.state / "token").st_mode & 0o777 == 0o600
    assert "/v1/jobs/{job_id}/events" in client.get("/openapi.json").json()["paths"]


def test_a_sweep_runs_and_every_job_reports_its_outputs(server):
    client, service, _ = server
    body = {
        "graph": GRAPH,
        "set": {"schedule.steps": 3},
        "sweep": {"prompt.text": ["a", "b"], "sampler.seed": [1, 2]},
    }
    made = client.post("/v1/jobs", json=body)
    assert made.status_code == 201
    ids = made.json()["jobs"]
    assert len(ids) == 4 and service.wait(ids, 10)
    job = client.get(f"/v1/jobs/{ids[3]}").json()
    assert job["status"] == "done" and job["values"] == {"prompt.text": "b", "sampler.seed": 2}
    picture = client.get(job["outputs"][0]["url"].replace("http://testserver", ""))
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    assert picture.content.endswith(b"b")
    batch = client.get(f"/v1/batches/{made.json()['batch_id']}").json()
    assert batch["counts"]["done"] == 4
    assert [j["id"] for j in client.get("/v1/jobs", params={"status": "done"}).json()["jobs"]] == sorted(
        ids, reverse=True
    )


def test_bad_submissions_get_400_with_every_problem_and_unknown_ids_404(server):
    client, _, _ = server
    broken = json.loads(json.dumps(GRAPH))
    del broken["edges"][0]
    broken["nodes"]["schedule"]["params"]["steps"] = 0
    answer = client.post("/v1/jobs", json={"graph": broken})
    assert answer.status_code == 400
    problems = answer.json()["problems"]
    assert len(problems) >= 2 and {"schedule"} <= {p["node"] for p in problems}
    bad_sweep = client.post("/v1/jobs", json={"graph": GRAPH, "sweep": {"sampler.seed": [1, "x"]}})
    assert bad_sweep.status_code == 400 and "expected a whole number" in bad_sweep.json()["detail"]
    assert client.post("/v1/jobs", json={"graph": "nope"}).status_code == 400
    assert client.post("/v1/jobs", json={"graph": GRAPH, "runs": 0}).status_code == 400
    for path in ("/v1/jobs/999", "/v1/jobs/999/events", "/v1/jobs/999/outputs/0", "/v1/batches/999"):
        assert client.get(path).status_code == 404
    assert client.post("/v1/jobs/999/cancel").status_code == 404


def _sse(text: str) -> list[dict]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":")
        )
        if "data" in fields:
            events.append(
                {"id": int(fields["id"]), "event": fields.get("event"), "data": json.loads(fields["data"])}
            )
    return events


def test_events_replay_as_sse_from_the_start_or_after_last_event_id(server):
    client, service, _ = server
    ids = client.post("/v1/jobs", json={"graph": GRAPH}).json()["jobs"]
    assert service.wait(ids, 10)
    everything = _sse(client.get(f"/v1/jobs/{ids[0]}/events").text)
    kinds = [e["event"] for e in everything]
    assert kinds[0] == "job_started" and kinds[-1] == "job_done" and "output" in kinds
    assert [e["id"] for e in everything] == list(range(1, len(everything) + 1))
    later = _sse(client.get(f"/v1/jobs/{ids[0]}/events", headers={"Last-Event-ID": "3"}).text)
    assert later == everything[3:]


def test_cancel_pending_and_running_then_retry(server):
    client, service, backend = server
    backend.hold = True
    ids = client.post("/v1/jobs", json={"graph": GRAPH, "sweep": {"sampler.seed": [1, 2]}}).json()["jobs"]
    for _ in range(100):
        if service.store.get(ids[0]).status == "running":
            break
        time.sleep(0.05)
    assert client.post(f"/v1/jobs/{ids[1]}/cancel").json()["cancel"] == "cancelled"
    assert client.post(f"/v1/jobs/{ids[0]}/cancel").json()["cancel"] == "requested"
    assert service.wait(ids, 10)
    assert [client.get(f"/v1/jobs/{i}").json()["status"] for i in ids] == ["cancelled", "cancelled"]
    backend.hold = False
    again = client.post(f"/v1/jobs/{ids[1]}/retry")
    assert again.status_code == 201
    new = again.json()["jobs"][0]
    assert service.wait([new], 10) and client.get(f"/v1/jobs/{new}").json()["status"] == "done"
    assert client.post(f"/v1/jobs/{new}/retry").status_code == 409


def test_a_restarted_server_finishes_what_it_had_accepted(tmp_path):
    state = tmp_path / "state"
    backend = PictureBackend()
    backend.hold = True
    first = Service(state, REGISTRY, backend)
    with pytest.raises(StateBusy):
        Service(state, REGISTRY, PictureBackend())
    first.start()
    ids = first.submit({"graph": GRAPH, "sweep": {"sampler.seed": [1, 2, 3]}}).jobs
    for _ in range(100):
        if first.store.get(ids[0]).status == "running":
            break
        time.sleep(0.05)
    assert first.store.get(ids[0]).status == "running"
    first._stop.set()  # the process dies: no clean shutdown, its job stays 'running' in the store
    first._thread.join(5)
    first.store.close()
    first._lock_file.close()
    second = Service(state, REGISTRY, PictureBackend())
    second.start()
    try:
        assert second.wait(ids, 10)
        assert [second.store.get(i).status for i in ids] == ["done"] * 3
        assert second.store.get(ids[0]).attempt == 2
        assert serialize.loads(second.store.get(ids[2]).graph, REGISTRY).nodes["sampler"].params["seed"] == 3
    finally:
        second.close()
