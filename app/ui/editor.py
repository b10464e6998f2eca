"""Editor: the graph being edited, its history, scene and view, and the edit actions of the canvas.

Every action (copy, paste, duplicate, delete, bypass, mute, frame, search-and-add) becomes a command
pushed on the history; a refused edit shows its reason as a status message and a tooltip. Action
names match assets/keymap.json. Imports Qt only; never torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from PySide6.QtCore import QObject, QPoint, QPointF, QRectF, Signal
from PySide6.QtGui import QGuiApplication, QMouseEvent
from PySide6.QtWidgets import QMenu, QToolTip

from app.graph import serialize, subgraphs
from app.graph.clipboard import copy_nodes, is_clip
from app.graph.commands import AddLinked, AddNode, Command, CommandError, Paste, Remove, SetMode
from app.graph.history import History
from app.graph.layout_commands import AddFrame
from app.graph.model import Graph, unique_name
from app.graph.subgraph_commands import Group, SetDefinition, Ungroup, edited
from app.graph.subgraphs import to_json
from app.jobs import seeds
from app.registry import Registry
from app.ui.inline_edit import InlineEditor
from app.ui.items import EdgeItem, FrameItem, NodeItem, RerouteItem
from app.ui.scene import GraphScene
from app.ui.search import SearchPopup
from app.ui.view import GraphView


class Editor(QObject):
    """Owns the open graph's history and scene; the window adds files and menus around it."""

    message = Signal(str)
    graph_replaced = Signal()

    def __init__(self, registry: Registry, graph: Graph | None = None) -> None:
        super().__init__()
        self.registry = registry
        self.graph = graph if graph is not None else Graph()
        self._outer: list[tuple[Graph, tuple, str]] = []  # graphs whose subgraph is being edited
        self._unsubscribe = self._know_subgraphs(self.graph)
        self.history = History(self.graph, registry)
        self.scene = GraphScene(self.graph, registry)
        self.view = GraphView(self.scene, self)
        self.inline = InlineEditor(self)  # double-click a value on a node
        self.search = SearchPopup(self.view, registry.offered)
        self.search.chosen.connect(self._add_chosen)
        self._search_at = QPointF()
        self._search_link: tuple[str, str, bool, str] | None = None
        self.node_menu: Callable[[str, QPoint], object] | None = None  # the window's node context menu
        self.actions: dict[str, Callable[[], object]] = {
            "search": lambda: self.open_search(self.view.cursor_scene_pos()),
            "undo": self.history.undo,
            "redo": self.history.redo,
            "copy": self.copy,
            "cut": self.cut,
            "paste": self.paste,
            "paste_links": lambda: self.paste(links=True),
            "duplicate": self.duplicate,
            "delete": self.delete,
            "bypass": lambda: self.toggle_mode("bypass"),
            "mute": lambda: self.toggle_mode("mute"),
            "frame_nodes": self.frame_nodes,
            "frame_selected": self.view.frame_selected,
            "frame_all": self.view.frame_all,
            "minimap": self.view.minimap.toggle,
            "select_all": self.select_all,
            "make_subgraph": self.make_subgraph,
            "unpack_subgraph": self.unpack_subgraph,
            "enter_subgraph": self.enter_subgraph,
            "leave_subgraph": self.leave_subgraph,
        }

    def set_graph(self, graph: Graph) -> None:
        """Edit another graph (New/Open/recovery): a fresh history, the scene rebuilt."""
        self._outer.clear()
        self._show(graph)

    @property
    def document(self) -> Graph:
        """The graph the file holds (the outermost one while a subgraph's inside is edited)."""
        return self._outer[0][0] if self._outer else self.graph

    @property
    def inside(self) -> str:
        """The name of the subgraph whose inside is being edited ("" when none)."""
        return self._outer[-1][2] if self._outer else ""

    def _show(self, graph: Graph) -> None:
        self.inline.close()
        self._unsubscribe()
        self._unsubscribe = self._know_subgraphs(graph)
        self.graph = graph
        self.history.graph = graph
        self.history.clear()
        self.scene.set_graph(graph)
        self.graph_replaced.emit()

    def _know_subgraphs(self, graph: Graph) -> Callable[[], None]:
        """Give the graph's subgraph definitions (and those it gains later) specs, so their nodes draw."""
        for problem in self.registry.install(graph.definitions):
            self.message.emit(problem)

        def listen(kind: str, data: dict) -> None:
            if kind == "definition_changed" and data["value"] is not None:
                for problem in self.registry.install({data["name"]: data["value"]}):
                    self.message.emit(problem)

        return graph.subscribe(listen)

    # -- subgraphs ----------------------------------------------------------------------------------
    def make_subgraph(self) -> None:
        """Selected nodes -> one subgraph node (its name and exposed params from `ask_subgraph`)."""
        nodes = self.selected_nodes()
        if not nodes:
            self.message.emit("select the nodes to make a subgraph of")
            return
        choice = self.ask_subgraph(nodes)
        if choice is not None:
            command = Group(nodes, *choice)
            if self.push(command):
                self.select_nodes([command.node_id])

    def ask_subgraph(self, nodes: list[str]) -> tuple[str, list, list, list] | None:
        """The subgraph's name and the (node, name)s of the params, unlinked inputs and outputs it exposes
        beside its crossing links; the window asks in a dialog. Here: a free name and the seeds (so
        control-after-generate still works on the group)."""
        name = unique_name("group", self.graph.definitions)
        return name, [(n, p) for n, p in seeds.seed_params(self.graph, self.registry) if n in nodes], [], []

    def enter_subgraph(self) -> None:
        """Edit the selected subgraph node's inside, with its own undo history; `leave_subgraph` writes it
        back to the definition (every instance changes) as one undo step of the graph outside."""
        chosen = self._selected_instance()
        definition = subgraphs.definition_of(self.graph, self.graph.nodes[chosen]) if chosen else None
        if definition is None:
            self.message.emit("select one subgraph node to edit its inside")
            return
        name = definition.name
        inner = definition.graph.copy()
        inner.definitions = self.graph.definitions  # nested subgraphs still draw
        self._outer.append((self.graph, self.history.stash(), name))
        self._show(inner)
        self.message.emit(f"inside {definition.title}: Leave subgraph (Ctrl+Shift+E) writes it back")

    def leave_subgraph(self) -> bool:
        """Back to the graph outside, with the edited inside as its definition (see `enter_subgraph`)."""
        if not self._outer:
            return False
        inner = self.graph
        outer, stashed, name = self._outer.pop()
        self._show(outer)
        self.history.restore(stashed)
        old = outer.definitions.get(name)
        if old is not None:
            new = edited(old, inner)
            if to_json(new, serialize.to_dict(new.graph)) != to_json(old, serialize.to_dict(old.graph)):
                self.push(SetDefinition(name, new))
        return True

    def _selected_instance(self) -> str | None:
        """The one selected subgraph node, or None (none selected, or several)."""
        chosen = [n for n in self.selected_nodes() if subgraphs.is_instance(self.graph.nodes[n])]
        return chosen[0] if len(chosen) == 1 else None

    def unpack_subgraph(self) -> None:
        """The selected subgraph node -> its nodes again, in its place."""
        chosen = self._selected_instance()
        if chosen is None:
            self.message.emit("select one subgraph node to unpack")
            return
        command = Ungroup(chosen)
        if self.push(command):
            self.select_nodes(command.node_ids)

    # -- pushing edits ------------------------------------------------------------------------------
    def push(self, command: Command) -> bool:
        try:
            self.history.push(command)
        except CommandError as error:
            self.message.emit(str(error))
            return False
        return True

    def refuse(self, reason: str, event: QMouseEvent | None = None) -> None:
        self.message.emit(reason)
        if event is not None:
            QToolTip.showText(event.globalPosition().toPoint(), reason, self.view)

    # -- selection ----------------------------------------------------------------------------------
    def selected(self, kind: type) -> list:
        return [item for item in self.scene.selectedItems() if isinstance(item, kind)]

    def selected_nodes(self) -> list[str]:
        return [item.node_id for item in self.selected(NodeItem)]

    def select_nodes(self, node_ids: list[str]) -> None:
        self.scene.clearSelection()
        for node_id in node_ids:
            if node_id in self.scene.nodes:
                self.scene.nodes[node_id].setSelected(True)

    def select_all(self) -> None:
        for item in self.scene.nodes.values():
            item.setSelected(True)

    # -- search -------------------------------------------------------------------------------------
    def open_search(self, pos: QPointF, link: tuple[str, str, bool, str] | None = None) -> None:
        """Open the node search at scene `pos`; with `link`, filtered to nodes that fit it."""
        self._search_at, self._search_link = pos, link
        prefix = ""
        if link is not None:
            prefix = f"in:{link[3]}" if link[2] else f"out:{link[3]}"
        self.search.open_at(self.view.mapFromScene(pos), prefix)

    def add_node_menu(self, pos: QPointF) -> QMenu:
        """The Add Node menu of an empty spot: one submenu per category, nodes by title; the chosen node
        is added at `pos`."""
        menu = QMenu(self.view)
        categories: dict[str, list] = {}
        for spec in self.registry.offered():
            categories.setdefault(spec.category or "other", []).append(spec)
        at = (round(pos.x()), round(pos.y()))
        for category in sorted(categories):
            sub = menu.addMenu(category)
            for spec in sorted(categories[category], key=lambda s: s.title):
                action = sub.addAction(spec.title, lambda type_id=spec.type: self._add_at(type_id, at))
                action.setToolTip(spec.description.split(". ")[0])
        return menu

    def _add_at(self, type_id: str, at: tuple[int, int]) -> None:
        command = AddNode(type_id, at)
        if self.push(command):
            self.select_nodes([command.node_id])

    def _add_chosen(self, type_id: str) -> None:
        at = (round(self._search_at.x()), round(self._search_at.y()))
        command: AddNode | AddLinked = AddNode(type_id, at)
        if self._search_link is not None:
            command = AddLinked(type_id, at, self._search_link)
        self._search_link = None
        if self.push(command):
            self.select_nodes([command.node_id])
        self.view.setFocus()

    # -- clipboard and edits ------------------------------------------------------------------------
    def copy(self) -> bool:
        nodes = self.selected_nodes()
        if not nodes:
            return False
        QGuiApplication.clipboard().setText(json.dumps(copy_nodes(self.graph, nodes), indent=1))
        return True

    def cut(self) -> None:
        if self.copy():
            command = Remove(nodes=self.selected_nodes())
            command.label = "Cut"
            self.push(command)

    def paste(self, links: bool = False) -> None:
        """Paste the clipboard's nodes at the cursor; `links` (Ctrl+Shift+V) also remakes the links that
        came into them from the rest of the graph."""
        try:
            data = json.loads(QGuiApplication.clipboard().text())
        except ValueError:
            data = None
        if not is_clip(data):
            self.message.emit("the clipboard holds no Nodeloom nodes")
            return
        at = (round(self.view.cursor_scene_pos().x()), round(self.view.cursor_scene_pos().y()))
        command = Paste(data, at, links=links)
        if self.push(command):
            self.select_nodes(list(command.new_ids.values()))

    def duplicate(self) -> None:
        nodes = self.selected_nodes()
        if not nodes:
            return
        positions = self.graph.layout.get("positions", {})
        left = min(positions.get(n, (0, 0))[0] for n in nodes)
        top = min(positions.get(n, (0, 0))[1] for n in nodes)
        command = Paste(copy_nodes(self.graph, nodes), (left + 40, top + 40))
        command.label = "Duplicate"
        if self.push(command):
            self.select_nodes(list(command.new_ids.values()))

    def delete(self) -> None:
        command = Remove(
            nodes=self.selected_nodes(),
            edges=[item.edge for item in self.selected(EdgeItem)],
            frames=[item.frame_id for item in self.selected(FrameItem)],
            reroutes=[(item.key, item.index) for item in self.selected(RerouteItem)],
        )
        if command.nodes or command.edges or command.frames or command.reroutes:
            self.push(command)

    def toggle_mode(self, mode: str) -> None:
        nodes = self.selected_nodes()
        if nodes:
            every = all(self.graph.nodes[n].mode == mode for n in nodes)
            self.push(SetMode(nodes, "normal" if every else mode))

    def frame_nodes(self) -> None:
        """Put a frame around the selected nodes (Ctrl+J)."""
        items = self.selected(NodeItem)
        if not items:
            return
        rect = QRectF()
        for item in items:
            rect = rect.united(item.mapRectToScene(item.rect()))
        rect = rect.adjusted(-30, -50, 30, 30)
        self.push(AddFrame((round(rect.x()), round(rect.y()), round(rect.width()), round(rect.height()))))
