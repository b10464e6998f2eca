"""torch-facing services shared by the diffusion nodes: device and dtype choice (device.py), the model
manager (models.py), seeding (seeding.py), latent previews (preview.py), socket values (values.py),
schedulers (schedulers.py), the guidance adapter (guidance.py) and the sampling loop (sampling.py).

Importing this package imports nothing heavy: every module imports torch inside its functions, so the
editor and the CLI start without torch. Never import Qt here.
"""
