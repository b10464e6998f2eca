"""The graph as pure data: socket types, node specs, Graph/Node/Edge, file format.

Never import Qt or torch anywhere under app/graph (a test checks it in a fresh interpreter).
"""
