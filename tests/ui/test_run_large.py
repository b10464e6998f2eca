"""A run the memory estimate refuses: the editor asks, and "Yes" runs the same snapshot again allowed to be
large (the worker is stubbed: what matters is what the editor sends it)."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox

from app.graph import serialize


def test_a_refused_run_is_asked_about_and_run_anyway(window, monkeypatch):
    sent: list[dict] = []
    monkeypatch.setattr(
        window.runner.worker, "submit", lambda text, targets, **kw: sent.append(kw) or len(sent)
    )
    asked: list[str] = []

    def answer(_parent, _title, text, *args):
        asked.append(text)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", answer)
    snapshot = serialize.dumps(window.editor.graph)
    window.runner.submit_snapshot(snapshot, None)
    assert sent[-1]["allow_large"] is False
    why = "this run needs about 130.0 GB (2.0 GB of weights + 128.0 GB here at once) but cpu has 22.0 GB free"
    window.runner._done(
        {"status": "invalid", "problems": [{"code": "too_large", "message": why + ": make it"}]}
    )
    assert len(asked) == 1 and "needs about 130.0 GB" in asked[0] and "Run it anyway?" in asked[0]
    assert len(sent) == 2 and sent[-1]["allow_large"] is True
    assert window.runner.last_job[0] == snapshot  # the same snapshot, not the graph as edited since


def test_no_is_the_end_of_it(window, monkeypatch):
    sent: list[dict] = []
    monkeypatch.setattr(window.runner.worker, "submit", lambda text, targets, **kw: sent.append(kw) or 1)
    monkeypatch.setattr(QMessageBox, "question", lambda *args: QMessageBox.StandardButton.No)
    window.runner.submit_snapshot(serialize.dumps(window.editor.graph), None)
    window.runner._done({"status": "invalid", "problems": [{"code": "too_large", "message": "too big"}]})
    assert len(sent) == 1
