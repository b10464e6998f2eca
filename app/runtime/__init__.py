"""torch-facing services shared by the diffusion nodes.

- families/: one class per model architecture (SD1.x/SD2, SDXL base and refiner) that the loaders, Text
  Encode and the Sampler ask instead of testing for a family
- checkpoints.py, vaes.py, controlnets.py, inventory.py: what a model file or folder is, from headers
  and configs (no weights); tokenizers.py: the shipped CLIP tokenizers
- models.py: the model manager (load once, move, offload, free); device.py: devices and dtypes
- lora.py, embeddings.py: LoRA patches and textual-inversion vectors
- text.py: prompt weighting and encoding; sampling.py: the denoising loop; schedulers.py, guidance.py,
  control.py, cache/: what the loop uses; seeding.py, preview.py, provenance.py; values.py: socket values

Importing this package imports nothing heavy: every module imports torch inside its functions (the
DeepCache walk in cache/deepcache.py is imported only when a cache policy runs), so the editor and the
CLI start without torch. Never import Qt here.
"""
