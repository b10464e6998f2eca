"""The PySide6 desktop editor: a view of app.graph that edits it only through undoable commands.

Never import torch here: runs go to the engine's worker process, the UI thread only paints and edits.
"""
