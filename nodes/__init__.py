"""Node families: one module per family, each declaring specs with `app.graph.spec.node`.

Modules here must not import torch, diffusers or Qt at module level: the editor lists nodes at start.
"""
