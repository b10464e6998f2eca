"""Undo/redo for one graph: a stack of applied commands, gesture merging and a clean (saved) marker.

`History.push(command)` applies the command and records it; a command whose gesture matches the last
one (the same slider drag, typing burst or mouse drag) merges into it, so undo takes the whole gesture
back at once. The clean marker remembers which point of the history matches the file on disk; the
editor shows unsaved changes whenever the history is not at that point.

Pure Python: never import Qt or torch here.
"""

from __future__ import annotations

from collections.abc import Callable

from app.graph.commands import Command
from app.graph.model import Graph, SpecLookup

HistoryListener = Callable[[], None]


class History:
    """The undo stack of one graph (no Qt: the editor listens with `subscribe`)."""

    def __init__(self, graph: Graph, specs: SpecLookup | None = None, limit: int = 500) -> None:
        self.graph, self.specs, self.limit = graph, specs, limit
        self._done: list[Command] = []
        self._undone: list[Command] = []
        self._clean: int | None = 0
        self._listeners: list[HistoryListener] = []

    def subscribe(self, listener: HistoryListener) -> Callable[[], None]:
        """Call `listener()` after every push, undo, redo or clean change; returns an unsubscriber."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    def push(self, command: Command) -> Command:
        """Apply `command` and record it (raises CommandError, leaving the graph unchanged, if it cannot)."""
        command.apply(self.graph, self.specs)
        if not command.changed:
            return command
        if self._undone:
            self._undone.clear()
            if self._clean is not None and self._clean > len(self._done):
                self._clean = None
        top = self._done[-1] if self._done else None
        if top is not None and self._clean != len(self._done) and top.can_merge(command):
            top.merge(command)
        else:
            self._done.append(command)
            if len(self._done) > self.limit:
                del self._done[0]
                self._clean = None if self._clean in (None, 0) else self._clean - 1
        self._changed()
        return command

    def undo(self) -> bool:
        if not self._done:
            return False
        command = self._done.pop()
        command.revert(self.graph)
        self._undone.append(command)
        self._changed()
        return True

    def redo(self) -> bool:
        if not self._undone:
            return False
        command = self._undone.pop()
        command.apply(self.graph, self.specs)
        self._done.append(command)
        self._changed()
        return True

    @property
    def can_undo(self) -> bool:
        return bool(self._done)

    @property
    def can_redo(self) -> bool:
        return bool(self._undone)

    @property
    def undo_label(self) -> str:
        return self._done[-1].label if self._done else ""

    def __len__(self) -> int:
        return len(self._done)

    def mark_clean(self) -> None:
        """The graph now matches its file (after a save or load)."""
        self._clean = len(self._done)
        self._changed()

    def mark_dirty(self) -> None:
        """No point of the history matches the file (e.g. a graph restored from a recovery file)."""
        self._clean = None
        self._changed()

    @property
    def is_clean(self) -> bool:
        return self._clean == len(self._done)

    def stash(self) -> tuple[list[Command], list[Command], int | None]:
        """The stacks and clean marker as they are (to give back with `restore`, e.g. around editing a
        subgraph's inside, which has a history of its own)."""
        return list(self._done), list(self._undone), self._clean

    def restore(self, stashed: tuple[list[Command], list[Command], int | None]) -> None:
        self._done, self._undone, self._clean = list(stashed[0]), list(stashed[1]), stashed[2]
        self._changed()

    def clear(self) -> None:
        self._done.clear()
        self._undone.clear()
        self._clean = 0
        self._changed()
