"""Runner: runs the edited graph in the engine's worker process and turns its events into what the editor
shows: node badges (StatusTracker's states from cache keys, computed here on the UI thread), progress,
pictures, runtime errors, status lines (device, memory, model loads).

- `run()` runs the output nodes, `run([node])` only what that node needs ("Run to here").
- `cancel()` is cooperative: the running node stops at its next step. A second cancel, or a node that
  ignores it for KILL_AFTER_MS, hard-stops the worker process; the next run starts a fresh one, which
  finds earlier results in the disk cache.
- Pictures follow keys (app/ui/pictures.py): a node shows the picture of the cache key it has now, and
  none when that key has no picture, so a thumbnail or the Preview dock never shows another setting's.
- Live: each edit restarts a debounce timer (LIVE_MS; TYPING_MS for text params, so typing a prompt does not
  start a run per keystroke). When it fires and something is stale, a run in flight whose running node the
  edit made stale is cancelled at its next step boundary, and the next run starts from the cached ancestors.
  A run in flight that the edit does not touch finishes first.
- A run the memory estimate refuses (app/engine/resources.py) emits `too_large`; `run_anyway()` runs the
  same snapshot again, allowed to be large.
The worker's events are drained by a QTimer on the UI thread, which never waits on the worker.
Imports Qt (and numpy for pictures); never torch.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from app.engine.events import EventKind
from app.engine.plan import Problem
from app.engine.status import NodeState, StatusTracker
from app.engine.store import DiskStore
from app.engine.worker import DEFAULT_REGISTRY, Worker
from app.files import FileResolver, input_dirs
from app.fsutil import user_cache_dir
from app.graph import serialize
from app.graph import types as T
from app.graph.model import Graph
from app.ui.pictures import PictureBook
from app.ui.run_state import RunEditor, RunState

LIVE_MS = 300
TYPING_MS = 900
POLL_MS = 25
REFRESH_MS = 40
KILL_AFTER_MS = 4000
EDITS = ("param_changed", "edge_added", "edge_removed", "node_added", "node_removed", "node_changed")
STATE_EVENTS = (
    EventKind.STARTED,
    EventKind.CACHED,
    EventKind.FINISHED,
    EventKind.ERROR,
    EventKind.BLOCKED,
    EventKind.CANCELLED,
)


class Runner(QObject):
    """One editor's runs. Signals tell the window's panels what changed; state lives in attributes."""

    states_changed = Signal()  # badges (and `states`, `problems`, `errors`) were recomputed
    picture = Signal(str, object, str)  # node, uint8 (H, W, 3) picture or None (none now), caption
    message = Signal(str)  # a status line
    device = Signal(dict)  # the worker's `device` event: device name, memory in use
    busy = Signal(bool)  # a run started (True) or ended (False)
    finished = Signal(dict)  # the worker's `run_done` event
    too_large = Signal(str)  # a run refused for memory (the estimate's sentence); run_anyway() runs it

    def __init__(
        self,
        editor: RunEditor,
        worker_registry: str = DEFAULT_REGISTRY,
        cache_dir: str | Path | None = None,
        output_dir: str | Path = "output",
        device: str = "auto",
    ) -> None:
        super().__init__()
        self.editor = editor
        root = Path(cache_dir) if cache_dir else user_cache_dir() / "results"
        self.worker = Worker(cache_dir=root, registry=worker_registry)
        self.base_dirs: list[Path] = list(input_dirs(None))
        self.confined = False
        self.tracker = StatusTracker(
            editor.registry, FileResolver(base_dirs=tuple(self.base_dirs)), DiskStore(root)
        )
        self.output_dir = Path(output_dir)
        self.device_setting = device
        self.run_id: int | None = None
        self.last_job: tuple[str, list[str] | None, bool] | None = None  # (graph JSON, targets, save)
        self.pending: list[tuple[list[str] | None, bool]] = []  # at most one run queued: (targets, save)
        self.live = False
        self.live_saves = False  # Live runs show results but write no files unless this is set
        self.saved: dict[str, list[str]] = {}  # output node -> the files the last run wrote or found
        self.progress: dict[str, tuple[int, int]] = {}  # running node -> (step, total)
        self.errors: dict[str, dict[str, Any]] = {}  # node -> its last runtime `error` event
        self.book = PictureBook(editor, self.picture.emit, self._title)
        self.gallery = self.book.gallery  # cache key -> (picture, caption)
        self.pictures = self.book.shown  # node -> the (picture, caption) it shows now
        self.states: dict[str, NodeState] = {}
        self.problems: list[Problem] = []  # validation problems of the whole graph, now
        self.submitted: list[tuple[int, list[str] | None]] = []  # (run id, targets) of every run
        self.log: deque[dict[str, Any]] = deque(maxlen=5000)  # recent events, pictures left out
        self.last_done: dict[str, Any] | None = None
        self.device_info: dict[str, Any] = {}
        self._cancelling = False
        self._poll = self._timer(POLL_MS, self._drain, single=False)
        self._refresh_timer = self._timer(REFRESH_MS, self.refresh)
        self._live_timer = self._timer(LIVE_MS, self._live_fire)
        self._kill_timer = self._timer(KILL_AFTER_MS, self.kill)
        self._unsubscribe = editor.graph.subscribe(self._on_graph_event)
        editor.graph_replaced.connect(self._graph_replaced)
        self.refresh()

    def _timer(self, interval: int, slot: Any, single: bool = True) -> QTimer:
        timer = QTimer(self)
        timer.setInterval(interval)
        timer.setSingleShot(single)
        timer.timeout.connect(slot)
        return timer

    @property
    def running(self) -> bool:
        return self.run_id is not None

    # -- commands -----------------------------------------------------------------------------------
    def run(self, targets: list[str] | None = None, save: bool = True) -> None:
        """Run the graph's outputs (or what `targets` need); during a run, queue it behind that one.
        `save=False` runs output nodes without writing files (Save Image only shows its pictures)."""
        if getattr(self.editor, "inside", ""):
            self.message.emit("leave the subgraph (Ctrl+Shift+E) to run the graph")
            return
        if self.run_id is not None:
            self.pending = [(targets, save)]
            self._cancel_if_stale()
            return
        self._submit(targets, save)

    def run_to(self, node_id: str) -> None:
        self.run([node_id])

    def cancel(self) -> None:
        """Stop the run at the running node's next step; a second cancel stops the worker at once."""
        self.pending = []
        self._live_timer.stop()
        if self.run_id is None:
            return
        if self._cancelling:
            self.kill()
            return
        self._cancelling = True
        self.worker.cancel()
        self._kill_timer.start()
        self.message.emit("cancelling: the running node stops at its next step")

    def kill(self) -> None:
        """End the worker process now; the disk cache survives, results held in its memory do not."""
        self._kill_timer.stop()
        if self.run_id is None:
            return
        for event in self.worker.kill():
            self._handle(event)
        self.tracker.known.clear()  # only what the disk cache holds is still there
        self.message.emit("stopped the worker (a node ignored cancel); the next run starts a new one")
        self.refresh()

    def set_live(self, on: bool) -> None:
        self.live = on
        if on:
            self._live_timer.start(LIVE_MS)
        else:
            self._live_timer.stop()

    def set_graph_folder(self, folder: Path | None, confined: bool = False) -> None:
        """Relative input files resolve against the graph file's folder first, then the working folder;
        `confined` (a graph from a PNG the user did not trust) reads no input file outside them."""
        self.base_dirs, self.confined = list(input_dirs(folder)), confined
        self.tracker.resolver = FileResolver(base_dirs=tuple(self.base_dirs), confined=confined)
        self._refresh_timer.start()

    def close(self) -> None:
        for timer in (self._poll, self._refresh_timer, self._live_timer, self._kill_timer):
            timer.stop()
        self._unsubscribe()
        self._unsubscribe = lambda: None
        self.worker.close()

    # -- submitting ---------------------------------------------------------------------------------
    def submit_snapshot(self, graph_json: str, targets: list[str] | None) -> int:
        """Run a saved snapshot of a graph (a queued job) now; its run id. The worker must be idle."""
        graph = serialize.loads(graph_json, self.editor.registry, source="<queued run>")
        self._submit(targets, True, graph, graph_json)
        return self.run_id

    def run_anyway(self) -> None:
        """Run the last submitted snapshot again, past the memory estimate (the user said so)."""
        if self.last_job is None or self.running:
            return
        text, targets, save = self.last_job
        graph = serialize.loads(text, self.editor.registry, source="<run anyway>")
        self._submit(targets, save, graph, text, allow_large=True)

    def _submit(
        self,
        targets: list[str] | None,
        save: bool = True,
        graph: Graph | None = None,
        text: str = "",
        allow_large: bool = False,
    ) -> None:
        graph = graph or self.editor.graph
        self.saved = {}
        starting = not self.worker.alive
        self.tracker.submitted(graph)
        text = text or serialize.dumps(graph)
        self.last_job = (text, targets, save)
        self.run_id = self.worker.submit(
            text,
            targets,
            output_dir=str(self.output_dir),
            device=self.device_setting,
            base_dirs=[str(p) for p in self.base_dirs],
            confined=self.confined,
            save_outputs=save,
            allow_large=allow_large,
        )
        self.submitted.append((self.run_id, targets))
        self._cancelling = False
        self._poll.start()
        self.busy.emit(True)
        self.message.emit("starting the worker process…" if starting else "running…")

    def _cancel_if_stale(self) -> None:
        """Cancel the run in flight if the node it is running now no longer has the key it started with."""
        keys = self.tracker.keys(self.editor.graph)
        running = list(self.progress)
        if not running or any(keys.get(n) != self.tracker.submitted_key(n) for n in running):
            self.worker.cancel()

    # -- graph edits --------------------------------------------------------------------------------
    def _on_graph_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind not in EDITS:
            return
        self._refresh_timer.start()
        if self.live:
            self._live_timer.start(TYPING_MS if self._is_text(kind, data) else LIVE_MS)

    def _is_text(self, kind: str, data: dict[str, Any]) -> bool:
        if kind != "param_changed":
            return False
        spec = self.editor.registry.get(data["node"].type)
        param = spec.param(data["name"]) if spec else None
        return param is not None and param.type == T.STRING and not param.choices

    def _graph_replaced(self) -> None:
        self._unsubscribe()
        self._unsubscribe = self.editor.graph.subscribe(self._on_graph_event)
        self.errors.clear()
        self.pictures.clear()
        self.message.emit("")
        self.refresh()

    def _live_fire(self) -> None:
        if not self.live:
            return
        self.refresh()
        if any(state.state == "stale" for state in self.states.values()):
            self.run(save=self.live_saves)

    # -- events -------------------------------------------------------------------------------------
    def _drain(self) -> None:
        events = self.worker.events()
        if not events and self.run_id is None:
            self._poll.stop()
        states = False
        for event in events:
            states |= self._handle(event)
        if states:
            self.refresh()

    def _handle(self, event: dict[str, Any]) -> bool:
        """Take one worker event; True when node states must be recomputed."""
        kind, node = event["event"], event.get("node")
        if event.get("run") not in (None, self.run_id):
            return False
        self.log.append({k: v for k, v in event.items() if k != "image"})
        if kind in (EventKind.CACHED, EventKind.FINISHED, EventKind.ERROR):
            self.tracker.observe(event)
            self.progress.pop(node, None)
            if kind == EventKind.ERROR:
                self.errors[node] = event
                self.message.emit(f"error in {self._title(node)}: {event.get('message', '')}")
            else:
                self.errors.pop(node, None)
        elif kind == EventKind.STARTED:
            self.progress[node] = (0, 0)
            self.message.emit(self._starting(node))
        elif kind == EventKind.CANCELLED:
            self.progress.pop(node, None)
        elif kind == EventKind.PROGRESS and node in self.progress:
            self.progress[node] = (event["step"], event["total"])
            self.editor.scene.set_run_state(node, RunState("running", "", event["step"], event["total"]))
        elif kind == EventKind.PREVIEW and event.get("image") is not None:
            step = f"step {event['step']}/{event['total']}" if event.get("total") else "preview"
            self._show(node, event["image"], f"{self._title(node)} — {step}")
        elif kind == EventKind.IMAGE:
            self._image(node, event)
        elif kind == EventKind.MODEL:
            took = f" in {event['seconds']:.1f}s" if "seconds" in event else ""
            self.message.emit(f"model {event.get('action')}: {Path(event.get('path', '')).name}{took}")
        elif kind == EventKind.OUTPUT:
            self._output(node, event)
        elif kind == EventKind.WARNING:
            self.message.emit(f"{self._title(node)}: {event.get('message', '')}")
        elif kind == EventKind.DEVICE:
            self.device_info = event
            self.device.emit(event)
        elif kind == EventKind.RUN_DONE:
            self._done(event)
        return kind in STATE_EVENTS or kind == EventKind.RUN_DONE

    def _done(self, event: dict[str, Any]) -> None:
        self.run_id = None
        self.last_done = event
        self.progress.clear()
        self._cancelling = False
        self._kill_timer.stop()
        status = event.get("status")
        too_large = [p for p in event.get("problems", []) if p.get("code") == "too_large"]
        if status == "invalid":
            problems = [p.get("message", str(p)) for p in event.get("problems", [])]
            self.message.emit("not run: " + ("; ".join(problems[:2]) or "the graph is invalid"))
        elif status != "ok":
            self.message.emit(f"run {status}")
        else:
            self.message.emit("run finished")
        self.finished.emit(event)
        if too_large:
            self.too_large.emit(too_large[0].get("message", ""))
        if self.pending:
            self._submit(*self.pending.pop())
        else:
            self.busy.emit(False)

    def _output(self, node: str | None, event: dict[str, Any]) -> None:
        """A file an output node wrote (or found written already, `unchanged`): said in the status line
        and in the node's picture caption."""
        path = event.get("path", event.get("value", ""))
        if node is not None and path:
            self.saved.setdefault(node, []).append(str(path))
        self.message.emit(f"{'already saved' if event.get('unchanged') else 'wrote'} {path}")

    def _image(self, node: str, event: dict[str, Any]) -> None:
        picture = event.get("images") or event["image"]  # a batch: its pictures, shown as a grid
        height, width = event["image"].shape[:2]
        batch = f", {event['batch']} images" if event.get("batch", 1) > 1 else ""
        self._show(node, picture, f"{self._title(node)} — {width}×{height}{batch}")
        graph = self.editor.graph
        for edge in graph.outgoing(node) if node in graph.nodes else []:
            spec = self.editor.registry.get(graph.nodes[edge.dst].type)
            if edge.src_port == event.get("port") and spec is not None and spec.output:
                self._show(edge.dst, picture, f"{self._title(edge.dst)} — {width}×{height}{batch}")

    def _show(self, node: str, picture: Any, caption: str) -> None:
        """A picture the run made for `node`: kept under the node's key in that run, shown when the
        node still has that key."""
        key = self.tracker.submitted_key(node)
        if key is not None:
            self.book.keep(key, picture, caption)
            if self.tracker.keys_now.get(node) == key:
                self.book.show(node, self.book.gallery[key])

    def _title(self, node_id: str | None) -> str:
        node = self.editor.graph.nodes.get(node_id or "")
        if node is None:
            return str(node_id)
        spec = self.editor.registry.get(node.type)
        return node.title or (spec.title if spec else node.type)

    def _starting(self, node_id: str) -> str:
        node = self.editor.graph.nodes.get(node_id)
        spec = self.editor.registry.get(node.type) if node else None
        models = [
            str(node.params.get(p.name, p.default))
            for p in (spec.params if spec else [])
            if (p.path or "").startswith("model:")
        ]
        if models:
            return f"loading {', '.join(models)} ({self._title(node_id)})…"
        return f"running {self._title(node_id)}…"

    # -- badges -------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Recompute every node's state from cache keys and paint it (running nodes show progress)."""
        self._refresh_timer.stop()
        graph = self.editor.graph
        self.states = self.tracker.states(graph)
        self.problems = self.tracker.problems  # validated once, in the same pass as the states
        keys = self.tracker.keys_now
        for node_id in graph.nodes:
            state = self.states.get(node_id, NodeState(""))
            if node_id in self.progress:
                step, total = self.progress[node_id]
                run = RunState("running", "", step, total)
            else:
                run = RunState(state.state, state.reason)
            self.editor.scene.set_run_state(node_id, run)
            entry = self.book.for_key(node_id, keys.get(node_id), state.state, self.tracker.disk)
            self.book.show(node_id, entry)
        for node_id in [n for n in self.pictures if n not in graph.nodes]:
            del self.pictures[node_id]
        self.states_changed.emit()
