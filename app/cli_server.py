"""`nodeloom serve` (the HTTP API, app/api) and its clients `nodeloom submit / status / cancel`.

    nodeloom serve [--host 127.0.0.1] [--port 8765] [--state-dir DIR] [--token-file F] [--backend local|ray]
    nodeloom submit GRAPH --sweep sampler.seed=1..8 [--wait]
    nodeloom status [JOB ...] [--batch ID]
    nodeloom cancel JOB ...

The server's state folder (default `$NODELOOM_STATE_DIR` or ~/.local/state/nodeloom, then `server/`) holds
the job store, the outputs and the token (created 0600); the clients read the token from there unless
`--token-file` says otherwise. Clients use only the standard library. Never import torch or Qt here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from app.cli_sweep import add_backend_flags, add_sweep_flags, make_backend, sets_and_groups
from app.fsutil import user_state_dir
from app.graph import serialize
from app.interop import comfyui
from app.jobs import sweep
from app.registry import Registry

EXIT_OK, EXIT_USAGE, EXIT_INVALID, EXIT_RUNTIME = 0, 2, 3, 4
URL = "http://127.0.0.1:8765"


def default_state() -> Path:
    return user_state_dir() / "server"


def add_parsers(commands: Any, device: Any) -> None:
    serve = commands.add_parser("serve", help="serve the HTTP API: a persistent job queue with workers")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--state-dir", help=f"job store, outputs and token (default: {default_state()})")
    serve.add_argument("--token-file", help="the bearer token (default: STATE/token, created 0600)")
    add_backend_flags(serve, device)
    submit = commands.add_parser("submit", help="send a graph (or a sweep of it) to a nodeloom server")
    add_sweep_flags(submit)
    submit.add_argument("--wait", action="store_true", help="wait until every job ended; print the outputs")
    status = commands.add_parser("status", help="what a nodeloom server's jobs are doing")
    status.add_argument("jobs", nargs="*", type=int)
    status.add_argument("--batch", type=int)
    status.add_argument("--json", action="store_true")
    cancel = commands.add_parser("cancel", help="cancel jobs on a nodeloom server")
    cancel.add_argument("jobs", nargs="+", type=int)
    for parser in (submit, status, cancel):
        parser.add_argument("--server", default=URL, help=f"the server (default: {URL})")
        parser.add_argument(
            "--token-file", help="the bearer token (default: the server's default state/token)"
        )


def cmd_serve(args: argparse.Namespace, registry: Registry) -> int:
    import uvicorn

    from app.api.routes import create_app
    from app.api.service import Service, StateBusy
    from app.cli import results_dir

    state = Path(args.state_dir) if args.state_dir else default_state()
    try:
        backend = make_backend(args, None if args.no_disk_cache else str(results_dir(args.cache_dir)))
        service = Service(state, registry, backend, Path(args.token_file) if args.token_file else None)
    except (ValueError, StateBusy, ImportError, OSError) as error:
        print(f"nodeloom: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"nodeloom: listening on {args.host}: the token in {state} is the only protection",
            file=sys.stderr,
        )
    service.start()
    print(f"nodeloom server on http://{args.host}:{args.port} (state {state}; workers "
          f"{', '.join(backend.names)})", file=sys.stderr, flush=True)  # fmt: skip
    try:  # the app's shutdown closes the service: uvicorn ends the process with the signal it caught
        uvicorn.run(
            create_app(service, close_on_shutdown=True), host=args.host, port=args.port, log_level="warning"
        )
    finally:
        service.close()  # also when uvicorn could not start (the port is taken)
    return EXIT_OK


class ClientError(Exception):
    def __init__(self, message: str, code: int = EXIT_RUNTIME) -> None:
        super().__init__(message)
        self.code = code


def request(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    token_file = Path(args.token_file) if args.token_file else default_state() / "token"
    try:
        token = token_file.read_text("utf-8").strip()
    except OSError as error:
        raise ClientError(
            f"cannot read the token {token_file} ({error.strerror}); give --token-file", EXIT_USAGE
        ) from None
    data = json.dumps(body).encode() if body is not None else None
    call = urllib.request.Request(args.server.rstrip("/") + path, data=data, method=method)
    call.add_header("Authorization", f"Bearer {token}")
    call.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(call, timeout=60) as answer:
            return json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        detail = json.loads(error.read() or b"{}")
        lines = [str(detail.get("detail", error.reason))] + [f"  - {p.get('node') or 'graph'}: {p['message']}"
                                                             for p in detail.get("problems", [])]  # fmt: skip
        raise ClientError(
            "\n".join(lines), EXIT_INVALID if error.code in (400, 404, 409) else EXIT_USAGE
        ) from None
    except (urllib.error.URLError, OSError) as error:
        raise ClientError(
            f"cannot reach {args.server} ({getattr(error, 'reason', error)}); is `nodeloom serve` running?"
        ) from None


def cmd_submit(args: argparse.Namespace, registry: Registry) -> int:
    try:
        graph, _ = comfyui.load_graph(args.graph, registry)
        sets, groups = sets_and_groups(args)
    except (serialize.GraphFileError, sweep.SweepProblem) as error:
        print(f"nodeloom: {error}", file=sys.stderr)
        return EXIT_INVALID if isinstance(error, serialize.GraphFileError) else EXIT_USAGE
    body = {"graph": serialize.to_dict(graph), "set": sets, "sweep": groups, "runs": args.runs}
    return _client(args, lambda: _submitted(args, request(args, "POST", "/v1/jobs", body)))


def _submitted(args: argparse.Namespace, made: dict[str, Any]) -> int:
    print(f"batch {made['batch_id']}: jobs {' '.join(map(str, made['jobs']))}")
    if not args.wait:
        return EXIT_OK
    while True:
        views = [request(args, "GET", f"/v1/jobs/{job}") for job in made["jobs"]]
        if all(v["status"] in ("done", "failed", "cancelled") for v in views):
            break
        time.sleep(0.5)
    for view in views:
        _print_view(view)
    return EXIT_OK if all(v["status"] == "done" for v in views) else EXIT_RUNTIME


def _print_view(view: dict[str, Any]) -> None:
    outputs = " ".join(o["path"] for o in view["outputs"])
    said = f"job {view['id']}: {view['status']}" + (f" {view['values']}" if view["values"] else "")
    print(said + (f" -> {outputs}" if outputs else "") + (f" ({view['error']})" if view["error"] else ""))


def cmd_status(args: argparse.Namespace, registry: Registry) -> int:
    def show() -> int:
        if args.jobs:
            views = [request(args, "GET", f"/v1/jobs/{job}") for job in args.jobs]
        elif args.batch is not None:
            views = request(args, "GET", f"/v1/batches/{args.batch}")["jobs"]
        else:
            views = request(args, "GET", "/v1/jobs?limit=50")["jobs"]
        for view in views:
            print(json.dumps(view)) if args.json else _print_view(view)
        return EXIT_OK

    return _client(args, show)


def cmd_cancel(args: argparse.Namespace, registry: Registry) -> int:
    def cancel() -> int:
        for job in args.jobs:
            print(f"job {job}: {request(args, 'POST', f'/v1/jobs/{job}/cancel')['cancel']}")
        return EXIT_OK

    return _client(args, cancel)


def _client(args: argparse.Namespace, call: Any) -> int:
    try:
        return call()
    except ClientError as error:
        print(f"nodeloom: {error}", file=sys.stderr)
        return error.code
