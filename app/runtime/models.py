"""The model manager: every checkpoint is loaded once per process and shared by all nodes that use it.

Loaded weights are keyed by (path, fingerprint, precision): editing a file on disk loads it again; the
same file used on CPU (fp32) and CUDA (fp16) is two entries. A component goes to the device when a node
asks for it (`Loaded.on`); on CUDA, components of other checkpoints are moved back to the CPU when the
free GPU memory would not fit it, and beyond `max_loaded` checkpoints (default 2, `$NODELOOM_MAX_MODELS`)
the least recently used one is freed. Nodes only read the modules; anything a node attaches for one run
(guidance hooks) it removes itself. Load, offload and free are reported to listeners as events
`{"event": "model", "action": "load"|"offload"|"free", "path": ..., ...}` so the CLI and editor can show them.

torch, diffusers and transformers are imported inside the functions; never import Qt here.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.engine.events import EventKind
from app.runtime import components, tokenizers
from app.runtime.checkpoints import CheckpointProblem, architecture, read_json
from app.runtime.device import Precision, dtype, precision_for
from app.runtime.families import Family, TextEncoder
from app.runtime.values import CheckpointSource

Listener = Callable[[dict[str, Any]], None]


@dataclass
class Loaded:
    """One checkpoint's components in one precision (modules live on the CPU until `on` moves them).

    `family` is the architecture (app/runtime/families) that says which modules and tokenizers there are.
    """

    source: CheckpointSource
    precision: Precision
    family: type[Family]
    modules: dict[str, Any]  # part name (unet or transformer, vae, text_encoder, ...) -> torch module
    tokenizers: dict[str, Any]  # tokenizer, tokenizer_2, ... -> tokenizer
    scheduler_config: dict[str, Any]
    manager: ModelManager
    derived: dict[str, Any] = field(default_factory=dict)  # data computed from the weights (preview map)

    @property
    def denoiser(self) -> Any:
        """The UNet or transformer."""
        return self.modules[self.family.denoiser]

    @property
    def vae(self) -> Any:
        return self.modules["vae"]

    def on(self, part: str, device: Any) -> Any:
        """The component `part` on `device` (moved there if needed, making room on the GPU first)."""
        return self.manager.place(self, part, device)


class ModelManager:
    def __init__(self, max_loaded: int | None = None) -> None:
        self.max_loaded = max_loaded or int(os.environ.get("NODELOOM_MAX_MODELS", "2"))
        self._loaded: OrderedDict[tuple, Loaded] = OrderedDict()
        self._modules: dict[tuple, Any] = {}  # single-module models (ControlNets), see load_module
        self._listeners: list[Listener] = []
        self._lock = threading.RLock()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, action: str, source: CheckpointSource, **fields: Any) -> None:
        for listener in list(self._listeners):
            listener({"event": EventKind.MODEL, "action": action, "path": source.path, **fields})

    def load(self, source: CheckpointSource, device: Any) -> Loaded:
        """The checkpoint's components in the precision `device` uses (loaded on first use)."""
        family = architecture(Path(source.config or source.path))
        precision = precision_for(device, family.cuda_dtype)
        key = (source.path, source.fingerprint, source.config, source.parts, precision.name)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            start = time.perf_counter()
            loaded = _read(source, precision, self)
            self._loaded[key] = loaded
            self._emit(
                "load", source, precision=precision.name, seconds=round(time.perf_counter() - start, 3)
            )
            while len(self._loaded) > self.max_loaded:
                _, old = self._loaded.popitem(last=False)
                self._emit("free", old.source, precision=old.precision.name)
            return loaded

    def load_module(
        self,
        kind: str,
        source: CheckpointSource,
        device: Any,
        reader: Callable[..., Any],
        part: str = "denoiser",
    ) -> Any:
        """A single-module model (a ControlNet, a separate VAE) on `device`, read once per process by
        `reader(source, torch_dtype)` in the dtype the precision gives `part`; nodes only read it."""
        precision = precision_for(device)
        key = (kind, source.path, source.fingerprint, source.config, precision.name)
        with self._lock:
            if key not in self._modules:
                start = time.perf_counter()
                module = reader(source, dtype(getattr(precision, part)))
                module.eval().requires_grad_(False)
                self._modules[key] = module
                self._emit(
                    "load", source, precision=precision.name, seconds=round(time.perf_counter() - start, 3)
                )
            module = self._modules[key]
            if next(module.parameters()).device != device:
                module.to(device)
            return module

    def place(self, loaded: Loaded, part: str, device: Any) -> Any:
        module = loaded.modules[part]
        current = next(module.parameters()).device
        if current == device:
            return module
        with self._lock:
            if getattr(device, "type", "") == "cuda":
                self._make_room(device, _nbytes(module), keep=loaded)
            return module.to(device)

    def _make_room(self, device: Any, needed: int, keep: Loaded) -> None:
        """Move other checkpoints' components back to the CPU until `needed` bytes fit on `device`."""
        import torch

        margin = 512 * 2**20
        for loaded in list(self._loaded.values()):
            if torch.cuda.mem_get_info(device)[0] > needed + margin:
                return
            if loaded is keep:
                continue
            for part, module in loaded.modules.items():
                if next(module.parameters()).device.type == "cuda":
                    module.to("cpu")
                    self._emit("offload", loaded.source, part=part)
            torch.cuda.empty_cache()

    def free(self, source: CheckpointSource | None = None) -> None:
        """Forget loaded weights (of one checkpoint, or all)."""
        with self._lock:
            for key in [k for k, v in self._loaded.items() if source is None or v.source == source]:
                old = self._loaded.pop(key)
                self._emit("free", old.source, precision=old.precision.name)

    def loaded(self) -> list[CheckpointSource]:
        return [entry.source for entry in self._loaded.values()]


def _nbytes(module: Any) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _read(source: CheckpointSource, precision: Precision, manager: ModelManager) -> Loaded:
    """Load a diffusers folder component by component, or a single file through its config skeleton,
    with the parts its family names; tokenizers come from the folder when it has them, else shipped."""
    path = Path(source.path)
    folder = Path(source.config) if source.config else path
    family = architecture(folder)
    declared = read_json(folder / "model_index.json")
    present = [e for e in family.encoders if _declared(declared, e.part)]
    tokenizers = {e.tokenizer: _tokenizer(folder, e) for e in present}
    if source.parts:
        modules = {
            part: _split_part(part, Path(file), folder, family, precision) for part, file in source.parts
        }
        tokenizers = {e.tokenizer: tokenizers[e.tokenizer] for e in present if e.part in modules}
    elif not source.config:
        modules = {
            part: _component(path, part, declared[part], precision)
            for part in family.parts()
            if _declared(declared, part)
        }
    elif family.denoiser == "transformer":  # SD3 / Flux in one file: ComfyUI's layout, part by part
        dtypes = {part: dtype(_dtype_of(part, precision)) for part in family.parts()}
        modules = components.read_all_in_one(path, folder, family, dtypes)
        tokenizers = {e.tokenizer: tokenizers[e.tokenizer] for e in present if e.part in modules}
    else:
        modules = _single_file(path, folder, family, precision, tokenizers)
    for module in modules.values():
        module.eval().requires_grad_(False)
    return Loaded(source, precision, family, modules, tokenizers, _scheduler_config(folder), manager)


def _declared(model_index: dict[str, Any], part: str) -> bool:
    entry = model_index.get(part)
    return isinstance(entry, list) and len(entry) == 2 and entry[0] is not None


def _dtype_of(part: str, precision: Precision) -> str:
    if part == "vae":
        return precision.vae
    return precision.text_encoder if part.startswith("text_encoder") else precision.denoiser


def _component(path: Path, part: str, entry: list[str], precision: Precision) -> Any:
    """One component of a diffusers folder, by the library and class its model_index names."""
    import diffusers
    import transformers

    library, name = entry
    if library not in ("diffusers", "transformers") or not hasattr(
        diffusers if library == "diffusers" else transformers, name
    ):
        raise CheckpointProblem(
            f"{path}: model_index.json names {library}.{name} for {part}, which is not loadable here"
        )
    cls = getattr(diffusers if library == "diffusers" else transformers, name)
    return cls.from_pretrained(
        path, subfolder=part, torch_dtype=dtype(_dtype_of(part, precision)), local_files_only=True
    )


def _split_part(part: str, path: Path, folder: Path, family: type[Family], precision: Precision) -> Any:
    """One component from its own file (ComfyUI's diffusion_models / text_encoders layout)."""
    torch_dtype = dtype(_dtype_of(part, precision))
    if part == family.denoiser:
        return components.read_denoiser(path, folder, family, torch_dtype)
    spec = next(e for e in family.encoders if e.part == part)
    return components.read_text_encoder(path, folder, spec, torch_dtype)


def _single_file(
    path: Path, folder: Path, family: type[Family], precision: Precision, tokenizers: dict[str, Any]
) -> dict[str, Any]:
    """The modules of an SD-class single file, through its family's diffusers pipeline."""
    import diffusers

    pipe = getattr(diffusers, family.pipeline).from_single_file(
        str(path),
        config=str(folder),
        local_files_only=True,
        torch_dtype=dtype(precision.denoiser),
        **_pipeline_extras(family),
        **tokenizers,
    )
    modules = {part: getattr(pipe, part) for part in family.parts()}
    modules["vae"] = modules["vae"].to(dtype(precision.vae))
    return modules


def _tokenizer(folder: Path, encoder: TextEncoder) -> Any:
    if (folder / encoder.tokenizer).is_dir():
        from transformers import CLIPTokenizer, T5TokenizerFast

        cls = T5TokenizerFast if encoder.kind == "t5" else CLIPTokenizer
        return cls.from_pretrained(folder, subfolder=encoder.tokenizer, local_files_only=True)
    return tokenizers.t5() if encoder.kind == "t5" else tokenizers.clip(encoder.pad)


def _pipeline_extras(family: type[Family]) -> dict[str, Any]:
    """Keyword arguments the family's pipeline class needs to build without its safety parts."""
    if family.pipeline == "StableDiffusionPipeline":
        return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    return {}


def _scheduler_config(folder: Path) -> dict[str, Any]:
    import json

    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text("utf-8"))
    return {k: v for k, v in config.items() if not k.startswith("_")}


_MANAGER: ModelManager | None = None


def manager() -> ModelManager:
    """The process-wide model manager."""
    global _MANAGER
    if _MANAGER is None:
        _MANAGER = ModelManager()
    return _MANAGER
