"""Guidance methods for the Sampler: how many model passes a step needs and how their predictions combine.

This is the ONE module that touches diffusers' guiders (`diffusers.guiders`, experimental in 0.42.1 and
pinned with it): `cfg` and the residual CFG variants are ours; every other method wraps the diffusers guider
class and drives it exactly as diffusers' modular denoise loop does (set_state -> prepare_inputs -> per batch
prepare_models / model / cleanup_models -> guider(batches)). If the guider API changes, only this file does.

Words: a *guider* (values.Guider, the GUIDER socket) is the plain-data choice the Guidance node makes
(method, scale, options); a *guidance* object (ClassicCfg, ResidualCfg, DiffusersGuidance) is what
`make_guidance` builds from it fresh for every sampling run, since guidance keeps per-run state (APG's
momentum); a *diffusers guider* is diffusers' own class, which DiffusersGuidance drives. Every hook a diffusers
guider attaches to the UNet for one pass is removed right after that pass.

Methods that perturb attention layers (pag, skip_layer, seg, auto_guidance) need a UNet with transformer
blocks at the given layer path; they refuse non-UNet families at validation. Residual CFG (StreamDiffusion,
Kodaira et al. 2023, arXiv 2312.12491: "RCFG leads to speeds up to 2.05x higher than the conventional CFG")
replaces the negative prediction by a virtual residual noise: `rcfg_self` never runs the negative prompt,
`rcfg_onetime` runs it once at the first step.

torch/diffusers are imported inside the functions; never import Qt here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.runtime.families import architecture_of, by_name, has_unet, is_flow
from app.runtime.values import Guider

DEFAULT_LAYERS = "mid_block.attentions.0.transformer_blocks:0"


@dataclass(frozen=True)
class Layers:
    """How a method perturbs UNet layers, as keyword names of its diffusers guider class.

    Args:
        config: the diffusers.hooks config class built for the chosen layers (`LayerSkipConfig`, ...).
        config_arg: the guider's keyword taking that config.
        options: fixed keywords of the config (what to skip).
        scale_arg: the guider's keyword for the perturbed branch's scale ("" = the method has none).
        window: prefix of the guider's own start/stop keywords for the perturbed branch ("" = none).
        dropout: the config takes the `dropout` option.
    """

    config: str
    config_arg: str
    options: dict[str, Any] = field(default_factory=dict)
    scale_arg: str = ""
    window: str = ""
    dropout: bool = False


@dataclass(frozen=True)
class Method:
    """One guidance method: the diffusers guider class driving it (None = ours) and, for methods that
    perturb attention layers, how (`layers`). A new diffusers method is one row in METHODS."""

    cls: str | None
    description: str = ""
    layers: Layers | None = None


METHODS: dict[str, Method] = {
    "cfg": Method(None, "classifier-free guidance (Ho & Salimans 2022), one batched pass"),
    "cfg_zero_star": Method("ClassifierFreeZeroStarGuidance", "CFG-Zero* (arXiv 2503.18886)"),
    "tangential": Method("TangentialClassifierFreeGuidance", "tangential CFG (arXiv 2503.18137)"),
    "apg": Method("AdaptiveProjectedGuidance", "adaptive projected guidance (arXiv 2410.02416)"),
    "pag": Method(
        "PerturbedAttentionGuidance",
        "perturbed-attention guidance (arXiv 2403.17377)",
        Layers(
            "LayerSkipConfig",
            "perturbed_guidance_config",
            {"skip_attention": False, "skip_attention_scores": True, "skip_ff": False},
            scale_arg="perturbed_guidance_scale",
            window="perturbed_guidance",
        ),
    ),
    "skip_layer": Method(
        "SkipLayerGuidance",
        "skip-layer guidance (STG, arXiv 2411.18664)",
        Layers(
            "LayerSkipConfig",
            "skip_layer_config",
            scale_arg="skip_layer_guidance_scale",
            window="skip_layer_guidance",
        ),
    ),
    "seg": Method(
        "SmoothedEnergyGuidance",
        "smoothed energy guidance (arXiv 2408.00760)",
        Layers(
            "SmoothedEnergyGuidanceConfig",
            "seg_guidance_config",
            scale_arg="seg_guidance_scale",
            window="seg_guidance",
        ),
    ),
    "auto_guidance": Method(
        "AutoGuidance",
        "autoguidance with a layer-skipped 'bad' model (arXiv 2406.02507)",
        Layers("LayerSkipConfig", "auto_guidance_config", dropout=True),
    ),
    "rcfg_self": Method(None, "residual CFG, self-negative: one model pass per step"),
    "rcfg_onetime": Method(None, "residual CFG, negative prompt run once at the first step"),
}


def guider_problems(guider: Guider, family: str | None) -> list[str]:
    """Why a guider cannot run on a model family (torch-free), for validation."""
    method = METHODS.get(guider.method)
    if method is None:
        return [f"unknown guidance method {guider.method!r}; known: {', '.join(METHODS)}"]
    problems = []
    if guider.method in ("rcfg_self", "rcfg_onetime") and is_flow(family):
        problems.append(f"{guider.method} works on epsilon and v predictions; a {family} model predicts flow")
    if method.layers and not has_unet(family):
        problems.append(
            f"{guider.method} perturbs UNet attention layers; a {family} model has none it can use"
        )
    architecture = architecture_of(family)
    allowed = by_name(architecture).guidance_methods if architecture else None
    if not problems and allowed is not None and guider.method not in allowed:
        problems.append(
            f"a {family} model takes only {', '.join(allowed)} guidance (its scale is the distilled guidance)"
        )
    if method.layers:
        try:
            parse_layers(guider.options.get("layers", DEFAULT_LAYERS))
        except ValueError as error:
            problems.append(str(error))
    return problems


def parse_layers(text: str) -> tuple[str, list[int]]:
    """ "mid_block.attentions.0.transformer_blocks:0,1" -> (path, [0, 1])."""
    path, _, indices = text.partition(":")
    try:
        numbers = [int(i) for i in indices.split(",") if i.strip()] or [0]
    except ValueError:
        numbers = []
    if not path or not numbers:
        raise ValueError(f"layers must look like 'mid_block.attentions.0.transformer_blocks:0', got {text!r}")
    return path, numbers


def layer_problem(denoiser: Any, text: str) -> str | None:
    """Why the `layers` param does not name transformer blocks of this denoiser (None when it does), with
    the block lists it has, so a typo is caught on the Guidance node and not deep inside a guider."""
    path, indices = parse_layers(text)
    lists = [name for name, module in denoiser.named_modules() if name.endswith("transformer_blocks")]
    try:
        blocks = denoiser.get_submodule(path)
    except AttributeError:
        blocks = None
    if blocks is None or path not in lists:
        shown = ", ".join(lists[:4]) + (" ..." if len(lists) > 4 else "")
        return f"layers: {path!r} is not a block list of this model (it has {shown})"
    if max(indices) >= len(blocks):
        return f"layers: {path} has {len(blocks)} blocks (0..{len(blocks) - 1}), not {max(indices)}"
    return None


@dataclass
class Pass:
    """One model pass of a step: its label (pred_cond, pred_uncond, ...), the model inputs of its branch
    by name (text embeddings, and what the family adds: SDXL's pooled text and time ids), and the diffusers
    batch state when a diffusers guider made it (such passes run one by one inside prepare/cleanup)."""

    label: str
    inputs: dict[str, Any]
    state: Any = None


class ClassicCfg:
    """uncond + scale * (cond - uncond); the passes run as one batch like StableDiffusionPipeline."""

    batched = True

    def __init__(self, scale: float, rescale: float) -> None:
        self.scale, self.rescale = scale, rescale
        self.uses_negative = scale > 1.0

    def passes(self, step: int, total: int, t: Any, cond: dict, uncond: dict) -> list[Pass]:
        if self.scale <= 1.0:
            return [Pass("pred_cond", cond)]
        return [Pass("pred_uncond", uncond), Pass("pred_cond", cond)]

    def combine(self, preds: list[Any], step: int, x_in: Any, scheduler: Any) -> Any:
        if len(preds) == 1:
            return preds[0]
        uncond, cond = preds
        guided = uncond + self.scale * (cond - uncond)
        return _rescale(guided, cond, self.rescale) if self.rescale > 0 else guided


def _rescale(guided: Any, cond: Any, amount: float) -> Any:
    """Guidance rescale (Lin et al. 2023, arXiv 2305.08891): match the std of the conditional prediction."""
    dims = list(range(1, cond.ndim))
    factor = cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True)
    return amount * (guided * factor) + (1 - amount) * guided


class ResidualCfg:
    """StreamDiffusion's RCFG: the negative prediction is delta * the virtual residual noise
    (x_t - sqrt(abar_t) * x0_prev) / sqrt(1 - abar_t), x0_prev being the previous step's denoised estimate.
    The first step uses the initial noise (self) or one real negative pass (onetime)."""

    batched = True

    def __init__(self, scale: float, delta: float, onetime: bool, prediction_type: str) -> None:
        self.scale, self.delta, self.onetime = scale, delta, onetime
        self.prediction_type = prediction_type
        self.uses_negative = onetime
        self.x0 = None

    def passes(self, step: int, total: int, t: Any, cond: dict, uncond: dict) -> list[Pass]:
        if step == 0 and self.onetime:
            return [Pass("pred_uncond", uncond), Pass("pred_cond", cond)]
        return [Pass("pred_cond", cond)]

    def combine(self, preds: list[Any], step: int, x_in: Any, scheduler: Any) -> Any:
        abar = _alpha_bar(scheduler, step)
        cond = _as_epsilon(preds[-1], x_in, abar, self.prediction_type)
        if len(preds) == 2:
            negative = _as_epsilon(preds[0], x_in, abar, self.prediction_type)
        else:  # before any estimate exists, x0 = 0: the virtual noise is the (scaled) initial noise
            previous = self.x0 if self.x0 is not None else 0.0
            negative = self.delta * (x_in - abar**0.5 * previous) / (1 - abar) ** 0.5
        eps = negative + self.scale * (cond - negative)
        self.x0 = (x_in - (1 - abar) ** 0.5 * eps) / abar**0.5
        return _from_epsilon(eps, x_in, abar, self.prediction_type)


def _alpha_bar(scheduler: Any, step: int) -> float:
    """Cumulative alpha of the current step, from sigmas where the scheduler has them, else alphas_cumprod."""
    sigmas = getattr(scheduler, "sigmas", None)
    index = getattr(scheduler, "step_index", None)
    if index is None:
        index = (getattr(scheduler, "begin_index", None) or 0) + step
    if sigmas is not None and len(sigmas) > index:
        return float(1 / (1 + sigmas[index] ** 2))
    t = int(scheduler.timesteps[min(index, len(scheduler.timesteps) - 1)])
    return float(scheduler.alphas_cumprod[t])


def _as_epsilon(pred: Any, x: Any, abar: float, kind: str) -> Any:
    return abar**0.5 * pred + (1 - abar) ** 0.5 * x if kind == "v_prediction" else pred


def _from_epsilon(eps: Any, x: Any, abar: float, kind: str) -> Any:
    if kind != "v_prediction":
        return eps
    return (eps - (1 - abar) ** 0.5 * x) / abar**0.5


class DiffusersGuidance:
    """Drives a diffusers guider through its protocol; each pass runs alone between prepare and cleanup."""

    batched = False
    uses_negative = True

    def __init__(self, guider: Any) -> None:
        self.guider = guider

    def passes(self, step: int, total: int, t: Any, cond: dict, uncond: dict) -> list[Pass]:
        self.guider.set_state(step=step, num_inference_steps=total, timestep=t)
        batches = self.guider.prepare_inputs({name: (cond[name], uncond[name]) for name in cond})
        return [
            Pass(b.__guidance_identifier__, {name: getattr(b, name) for name in cond}, b) for b in batches
        ]

    def enter(self, unet: Any) -> None:
        self.guider.prepare_models(unet)

    def leave(self, unet: Any) -> None:
        self.guider.cleanup_models(unet)

    def combine(self, preds: list[Any], step: int, x_in: Any, scheduler: Any) -> Any:
        return self.guider([p.state for p in preds]).pred


def make_guidance(guider: Guider, prediction_type: str = "epsilon") -> Any:
    """A fresh guidance object for one sampling run."""
    options = guider.options
    if guider.method == "cfg":
        return ClassicCfg(guider.scale, float(options.get("rescale", 0.0)))
    if guider.method in ("rcfg_self", "rcfg_onetime"):
        delta = float(options.get("delta", 1.0))
        return ResidualCfg(guider.scale, delta, guider.method == "rcfg_onetime", prediction_type)
    return DiffusersGuidance(diffusers_guider(guider))


def diffusers_guider(guider: Guider) -> Any:
    """The diffusers guider instance a GUIDER value describes (also used by tests as the reference)."""
    from diffusers import guiders, hooks

    method = METHODS[guider.method]
    options = guider.options
    common = {
        "guidance_scale": guider.scale,
        "guidance_rescale": float(options.get("rescale", 0.0)),
        "start": float(options.get("start", 0.0)),
        "stop": float(options.get("stop", 1.0)),
    }
    cls = getattr(guiders, method.cls)
    layers = method.layers
    if layers is None:
        return cls(**common)
    path, indices = parse_layers(options.get("layers", DEFAULT_LAYERS))
    config_options = dict(layers.options)
    if layers.dropout:
        config_options["dropout"] = float(options.get("dropout", 1.0))
    kwargs = {layers.config_arg: getattr(hooks, layers.config)(indices, fqn=path, **config_options)}
    if layers.scale_arg:
        kwargs[layers.scale_arg] = float(options.get("perturbed_scale", 2.8))
    if layers.window:
        kwargs.update(_window(layers.window, options))
    return cls(**kwargs, **common)


def _window(prefix: str, options: dict[str, Any]) -> dict[str, float]:
    """The perturbed branch's own start/stop fractions, when given."""
    found = {}
    for name in ("start", "stop"):
        if f"perturbed_{name}" in options:
            found[f"{prefix}_{name}"] = float(options[f"perturbed_{name}"])
    return found
