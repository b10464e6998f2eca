"""Node search ranking and filters, and the keymap data file (no widgets needed)."""

from __future__ import annotations

import json

import pytest

from app.ui.keymap import KeymapError, load_keymap
from app.ui.search import rank


def _types(registry, query):
    return [spec.type for spec in rank(registry.specs(), query)]


def test_fuzzy_words_match_titles_first(registry):
    assert _types(registry, "save")[0] == "image.save"
    assert _types(registry, "drw shp")[0] == "shapes.draw", "scattered letters still match"
    assert _types(registry, "zzqx") == []


def test_type_filters(registry):
    takes_image = _types(registry, "in:IMAGE")
    assert set(takes_image) == {"image.save", "image.preview"}
    gives_image = _types(registry, "out:image")
    assert set(gives_image) == {"image.load", "shapes.draw"}
    assert _types(registry, "in:FLOAT out:INT") == ["math.binary"]
    assert "math.binary" in _types(registry, "in:INT"), "an INT widens into a FLOAT param link"


def test_the_default_keymap_binds_every_documented_action():
    keymap = load_keymap()
    assert keymap["canvas"]["search"] == ["Tab"]
    assert keymap["canvas"]["bypass"] == ["Ctrl+B"] and keymap["canvas"]["mute"] == ["M"]
    assert keymap["canvas"]["frame_nodes"] == ["Ctrl+J"] and "Home" in keymap["canvas"]["frame_all"]


def test_a_key_bound_twice_is_refused(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"canvas": {"mute": ["M"]}, "window": {"save": ["m"]}}))
    with pytest.raises(KeymapError, match="(?i)m is bound twice"):
        load_keymap(path)
    path.write_text("[]")
    with pytest.raises(KeymapError, match="keys.json"):
        load_keymap(path)


def test_a_rebound_key_works_in_the_editor(qtbot, registry, tmp_path, monkeypatch):
    from PySide6.QtCore import Qt

    from app.graph import serialize
    from app.ui.window import MainWindow

    keys = load_keymap()
    keys["canvas"]["mute"] = ["K"]
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(keys))
    monkeypatch.setenv("NODELOOM_KEYMAP", str(path))
    window = MainWindow(registry, serialize.load("graphs/shapes.json", registry))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.editor.select_nodes(["save"])
    window.activateWindow()
    window.view.setFocus()
    qtbot.waitUntil(window.view.hasFocus)
    qtbot.keyClick(window.view, Qt.Key.Key_M)
    assert window.editor.graph.nodes["save"].mode == "normal"
    qtbot.keyClick(window.view, Qt.Key.Key_K)
    assert window.editor.graph.nodes["save"].mode == "mute"


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("LoraLoader", "model.lora"),
        ("LoraLoaderModelOnly", "model.lora_model_only"),
        ("VAELoader", "model.vae"),
        ("CheckpointLoaderSimple", "model.checkpoint"),
        ("CLIPTextEncode", "conditioning.text_encode"),
        ("CLIPTextEncodeSDXL", "conditioning.size"),
        ("KSampler", "sampling.sampler"),
        ("lora", "model.lora"),
    ],
)
def test_comfyui_class_names_find_our_nodes(query, found):
    from app.registry import default_registry

    assert _types(default_registry(), query)[0] == found


def test_right_click_on_empty_canvas_adds_a_node_from_its_category(qtbot, window):
    from PySide6.QtCore import QPointF

    menu = window.editor.add_node_menu(QPointF(500, 420))
    categories = {action.text(): action.menu() for action in menu.actions()}
    assert {"image", "values"} <= set(categories)  # the test registry: light nodes only
    save = next(a for a in categories["image"].actions() if a.text() == "Save Image")
    assert save.toolTip()
    before = set(window.editor.graph.nodes)
    save.trigger()
    (added,) = set(window.editor.graph.nodes) - before
    assert window.editor.graph.nodes[added].type == "image.save"
    assert window.editor.graph.layout["positions"][added] == [500, 420]
    assert window.editor.selected_nodes() == [added]


def test_hover_says_what_a_node_does_and_the_view_menu_toggles_every_dock(window):
    window.runner.refresh()
    tooltip = window.editor.scene.nodes["shape"].toolTip()
    assert tooltip.startswith("Draw Shape: ")
    docks = {a.text() for a in window.view_menu.actions()}
    assert {"Inspector", "Preview", "Errors", "Queue", "History"} <= docks
