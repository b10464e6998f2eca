"""The HTTP API (FastAPI; OpenAPI at /openapi.json): `create_app(service)`.

Every route but `GET /v1/health` needs `Authorization: Bearer <token>` (401 without it). Jobs: submit a
graph (with `set`, `sweep`, `runs`) -> 201 with the batch and job ids, 400 with every problem for a bad one;
read a job (404 for an unknown id), stream its stored events as server-sent events (replayed from the start
or after `Last-Event-ID`, closed when the job has ended), fetch an output PNG, cancel, retry; list jobs and
read batches. Never import torch or Qt here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from typing import Any

from fastapi import Body, Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

import app
from app.api.service import Rejected, Service
from app.jobs.store import ENDED, STATUSES

POLL = 0.2  # seconds between looks at a running job's event log


def create_app(service: Service, close_on_shutdown: bool = False) -> FastAPI:
    """The API over `service`; with `close_on_shutdown` the server's shutdown closes it (workers ended, their
    jobs given back) before uvicorn re-raises the SIGTERM / SIGINT it caught."""

    @contextlib.asynccontextmanager
    async def lifespan(_api: FastAPI):
        yield
        if close_on_shutdown:
            service.close()

    api = FastAPI(
        title="Nodeloom",
        version=app.__version__,
        description="Queue and run Nodeloom graphs.",
        lifespan=lifespan,
    )

    def authorized(authorization: str | None = Header(default=None)) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), service.token):
            raise HTTPException(401, "a bearer token is needed (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip

    def job_or_404(job_id: int):
        job = service.store.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        return job

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    @api.get("/v1/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": app.__version__, "workers": list(service.dispatcher.backend.names)}

    @api.post("/v1/jobs", status_code=201, dependencies=[Depends(authorized)])
    def submit(body: dict[str, Any] = Body(...)):  # noqa: B008  (FastAPI's way to declare a JSON body)
        try:
            done = service.submit(body)
        except Rejected as error:
            return JSONResponse({"detail": str(error), "problems": error.problems}, status_code=400)
        return {"batch_id": done.batch_id, "jobs": done.jobs}

    @api.get("/v1/jobs", dependencies=[Depends(authorized)])
    def jobs(request: Request, status: str | None = None, batch_id: int | None = None, limit: int = 200):
        if status is not None and status not in STATUSES:
            raise HTTPException(400, f"status must be one of {', '.join(STATUSES)}")
        found = service.store.jobs(
            (status,) if status else STATUSES, batch_id=batch_id, limit=min(limit, 1000)
        )
        return {"jobs": [service.view(job, base(request)) for job in found]}

    @api.get("/v1/jobs/{job_id}", dependencies=[Depends(authorized)])
    def job(job_id: int, request: Request):
        return service.view(job_or_404(job_id), base(request))

    @api.get(
        "/v1/jobs/{job_id}/events", response_class=EventSourceResponse, dependencies=[Depends(authorized)]
    )
    async def events(job_id: int, _job=Depends(job_or_404), last_event_id: str | None = Header(default=None)):  # noqa: B008
        after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
        while True:
            ended = service.store.get(job_id).status in ENDED  # read before the log: nothing is missed
            for seq, event in service.store.events(job_id, after):
                after = seq
                yield ServerSentEvent(data=event, id=str(seq), event=str(event.get("event", "message")))
            if ended:
                return
            await asyncio.sleep(POLL)

    @api.get("/v1/jobs/{job_id}/outputs/{index}", dependencies=[Depends(authorized)])
    def output(job_id: int, index: int):
        job_or_404(job_id)
        path = service.output_path(job_id, index)
        if path is None:
            raise HTTPException(404, f"job {job_id} has no output {index}")
        return FileResponse(path, media_type="image/png")

    @api.post("/v1/jobs/{job_id}/cancel", dependencies=[Depends(authorized)])
    def cancel(job_id: int, request: Request):
        job_or_404(job_id)
        said = service.store.cancel(job_id)
        return {
            "cancel": said or "already ended",
            "job": service.view(service.store.get(job_id), base(request)),
        }

    @api.post("/v1/jobs/{job_id}/retry", status_code=201, dependencies=[Depends(authorized)])
    def retry(job_id: int):
        old = job_or_404(job_id)
        if old.status not in ("failed", "cancelled"):
            raise HTTPException(
                409, f"job {job_id} is {old.status}; only failed or cancelled jobs are retried"
            )
        meta = {**old.meta, "retry_of": job_id}
        batch, ids = service.store.add_batch([old.graph], old.targets, source="retry", metas=[meta])
        return {"batch_id": batch, "jobs": ids}

    @api.get("/v1/batches/{batch_id}", dependencies=[Depends(authorized)])
    def batch(batch_id: int, request: Request):
        found = service.store.jobs(STATUSES, batch_id=batch_id, limit=100000)
        if not found:
            raise HTTPException(404, f"no batch {batch_id}")
        counts = {status: sum(1 for j in found if j.status == status) for status in STATUSES}
        return {"id": batch_id, "counts": counts, "jobs": [service.view(j, base(request)) for j in found]}

    return api
