"""Where files named by params live: input files and models under the configured model roots.

Model roots follow ComfyUI's layout (`<root>/checkpoints`, `<root>/vae`, `<root>/loras`, `<root>/embeddings`,
`<root>/controlnet`, `<root>/text_encoders` (alias `clip`), `<root>/diffusion_models` (alias `unet`)) and
A1111's folder names (`Stable-diffusion`, `VAE`, `ControlNet`, `Lora`, `LyCORIS`), so an existing models
folder just works. A root may also hold models directly (the shipped `assets/models`). Roots come from, in
order: `$NODELOOM_MODEL_ROOTS` (os.pathsep-separated), the `model_roots` list of the config file
(`$NODELOOM_CONFIG`, default `~/.config/nodeloom/config.json`), `./models`, and `assets/models`.
A model name may not escape its root ("../x" and absolute paths outside every root are refused).

Pure Python: never import Qt or torch here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"
MODEL_FOLDERS: dict[str, tuple[str, ...]] = {
    "checkpoints": ("checkpoints", "Stable-diffusion", "diffusers"),
    "vae": ("vae", "VAE"),
    "controlnet": ("controlnet", "ControlNet"),
    "loras": ("loras", "Lora", "LyCORIS"),
    "embeddings": ("embeddings",),
    "text_encoders": ("text_encoders", "clip"),
    "diffusion_models": ("diffusion_models", "unet"),
    "upscale_models": ("upscale_models", "ESRGAN", "RealESRGAN"),
}


class FileProblem(ValueError):
    """A file param that does not resolve; the message says what was looked for and where."""


def configured_model_roots() -> list[Path]:
    roots: list[Path] = []
    env = os.environ.get("NODELOOM_MODEL_ROOTS", "")
    roots.extend(Path(p).expanduser() for p in env.split(os.pathsep) if p)
    config = Path(os.environ.get("NODELOOM_CONFIG", "~/.config/nodeloom/config.json")).expanduser()
    if config.is_file():
        try:
            listed = json.loads(config.read_text("utf-8")).get("model_roots", [])
        except (OSError, ValueError, AttributeError) as error:
            raise FileProblem(f"config file {config}: cannot read model_roots ({error})") from None
        roots.extend(Path(p).expanduser() for p in listed if isinstance(p, str))
    roots.extend([Path.cwd() / "models", ASSETS / "models"])
    unique: list[Path] = []
    for root in roots:
        resolved = Path(os.path.normpath(root.absolute()))
        if resolved not in unique:
            unique.append(resolved)
    return unique


def input_dirs(graph_folder: Path | None) -> tuple[Path, ...]:
    """Where a graph's relative input files (Load Image paths) are looked for, in order: the graph file's
    own folder, so a graph shared with its pictures works from anywhere, then the working folder, then the
    shipped assets (the shipped graphs' example pictures, `examples/shape.png`, from any folder). The CLI
    and the editor both resolve through this one order."""
    folders = [graph_folder.resolve()] if graph_folder is not None else []
    return tuple(dict.fromkeys([*folders, Path.cwd(), ASSETS]))


@dataclass(frozen=True)
class FileResolver:
    """Resolves file params: input files against base folders, models against model roots."""

    base_dirs: tuple[Path, ...] = ()
    model_roots: tuple[Path, ...] = field(default_factory=lambda: tuple(configured_model_roots()))
    confined: bool = False  # input files only inside base_dirs (graphs from someone else's PNG)

    def model_dirs(self, kind: str) -> list[Path]:
        """Folders searched for models of `kind`, best first (existing ones only). Checkpoints may also
        sit directly in a root (the shipped models do); other kinds only in their own folders, so a picker
        of LoRAs never offers a checkpoint."""
        names = MODEL_FOLDERS.get(kind, (kind,))
        found = [root / name for root in self.model_roots for name in names]
        if kind == "checkpoints":
            found.extend(self.model_roots)
        return [d for d in found if d.is_dir()]

    def list_models(self, kind: str) -> list[str]:
        """Model names of `kind` (files with a model extension, or diffusers folders) for pickers."""
        names: list[str] = []
        for folder in self.model_dirs(kind):
            for entry in sorted(folder.iterdir()):
                is_model = entry.suffix in (".safetensors", ".ckpt", ".pt", ".pth", ".bin") or (
                    entry.is_dir() and any((entry / f).is_file() for f in ("model_index.json", "config.json"))
                )
                if is_model and entry.name not in names:
                    names.append(entry.name)
        return names

    def identity(self, path: Path) -> list[object]:
        """What a cache key records of a file a node reads: a model's content id (inside the model roots:
        keys then agree across machines that hold the same model anywhere), else (path, size, mtime)."""
        if any(path.is_relative_to(root) for root in self.model_roots):
            return ["content", content_id(path)]
        return fingerprint(path)

    def resolve(self, path_kind: str, value: str) -> Path:
        """The absolute path a file param names (raises FileProblem saying where it looked). Input files
        must be regular files (a folder would be walked, a FIFO or device would hang); with `confined`,
        they must also lie inside the base folders."""
        if not value:
            raise FileProblem("no file given")
        try:
            if path_kind.startswith("model:"):
                return self._model(path_kind.split(":", 1)[1], value)
            return self._input(value)
        except OSError as error:  # a name longer than the file system takes, a permission...
            raise FileProblem(f"cannot look up {value!r}: {error.strerror or error}") from None

    def _input(self, value: str) -> Path:
        candidate = Path(value).expanduser()
        bases = self.base_dirs or input_dirs(None)
        found = None
        if candidate.is_absolute():
            found = candidate if candidate.exists() else None
        else:
            found = next(
                ((base / candidate).resolve() for base in bases if (base / candidate).exists()), None
            )
        if found is None:
            where = "" if candidate.is_absolute() else f" (looked in {', '.join(str(b) for b in bases)})"
            raise FileProblem(f"file not found: {value}{where}")
        if not found.is_file():
            raise FileProblem(
                f"{found} is {'a folder' if found.is_dir() else 'not a regular file'}, not a file"
            )
        if self.confined and not any(found.resolve().is_relative_to(base.resolve()) for base in bases):
            raise FileProblem(
                f"{found} is outside the graph's folders; a graph from a PNG or an import reads only files "
                "beside it unless you allow it (CLI: --allow-outside-paths)"
            )
        return found

    def resolve_first(self, path_kind: str, names: tuple[str, ...]) -> Path:
        """The first of `names` that resolves to a file (FileProblem naming them and the folders searched)."""
        for name in names:
            try:
                path = self.resolve(path_kind, name)
            except FileProblem:
                continue
            if path.is_file():
                return path
        kind = path_kind.split(":", 1)[-1]
        where = ", ".join(str(f) for f in self.model_dirs(kind)) or ", ".join(
            str(r) for r in self.model_roots
        )
        tried = ", ".join(names)
        raise FileProblem(f"{kind} {names[0]!r} not found (looked for {tried} in {where})")

    def _model(self, kind: str, value: str) -> Path:
        folders = self.model_dirs(kind)
        for folder in folders:
            candidate = Path(os.path.normpath(folder / value))  # lexical: user symlinks stay allowed
            inside = any(candidate.is_relative_to(root) for root in self.model_roots)
            if not inside:
                raise FileProblem(
                    f"model path {value!r} leaves the model roots; only names inside them are allowed"
                )
            if candidate.exists():
                return candidate
        where = ", ".join(str(f) for f in folders) or ", ".join(str(r) for r in self.model_roots)
        raise FileProblem(f"{kind} model {value!r} not found (looked in {where})")


SAMPLE = 1 << 20  # bytes read at the start, the middle and the end of a model file for its content id
_CONTENT_IDS: dict[tuple[str, int, int], str] = {}


def content_id(path: Path) -> str:
    """A model file's (or folder's) identity from its bytes, the same on every machine whatever the path:
    sha256 of its size and its first, middle and last MiB (a folder: of each file's relative name and id).
    Cheap (3 MiB read a file) and kept per (path, size, mtime) for the process."""
    if path.is_dir():
        digest = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{child.relative_to(path).as_posix()}={content_id(child)};".encode())
        return digest.hexdigest()
    stat = path.stat()
    cached = (str(path), stat.st_size, stat.st_mtime_ns)
    if cached not in _CONTENT_IDS:
        digest = hashlib.sha256(str(stat.st_size).encode())
        with path.open("rb") as handle:
            for offset in sorted({0, max(0, stat.st_size // 2 - SAMPLE // 2), max(0, stat.st_size - SAMPLE)}):
                handle.seek(offset)
                digest.update(handle.read(SAMPLE))
        _CONTENT_IDS[cached] = digest.hexdigest()
    return _CONTENT_IDS[cached]


def fingerprint(path: Path) -> list[object]:
    """(path, size, mtime) of a file, or of every file in a folder: cheap, and changes when it does."""
    if path.is_dir():
        parts: list[object] = [str(path)]
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = child.stat()
            parts.append([str(child.relative_to(path)), stat.st_size, stat.st_mtime_ns])
        return parts
    stat = path.stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]
