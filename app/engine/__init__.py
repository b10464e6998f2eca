"""The engine: plan -> keys -> stores -> run. Validation, Merkle cache keys, memory and disk result
stores, and the executor with events and cancellation.

Never import torch or Qt anywhere under app/engine (a test checks it in a fresh interpreter).
"""
