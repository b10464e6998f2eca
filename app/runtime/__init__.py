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

import os

# Our events say what loads and how far a run is; the libraries' progress bars and notices (a "Loading
# weights" bar per model, a "torchvision not installed" line per import) only clutter the CLI and the
# editor's log. Set before any of them is imported (runtime modules import them inside functions); a
# user's own setting wins.
for _name, _value in (
    ("TRANSFORMERS_VERBOSITY", "error"),
    ("DIFFUSERS_VERBOSITY", "error"),
    ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
):
    os.environ.setdefault(_name, _value)
