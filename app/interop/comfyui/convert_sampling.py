"""ComfyUI's samplers as Nodeloom's Scheduler + Guidance + Sampler (registered in convert.CONVERTERS).

KSampler and KSamplerAdvanced carry their values over; SamplerCustomAdvanced gathers those of its noise
(RandomNoise), sampler (KSamplerSelect), sigmas (BasicScheduler) and guider (BasicGuider / CFGGuider) nodes,
which themselves become nothing. `sampler_name` x `scheduler` map through widgets.SAMPLERS / SIGMAS; every
inexact one is reported. Pure Python: never import torch or Qt here.
"""

from __future__ import annotations

from typing import Any

from app.interop.comfyui.convert import converts
from app.interop.comfyui.importer import Importer
from app.interop.comfyui.widgets import SAMPLERS, SIGMAS
from app.interop.comfyui.workflow import CNode


def sampler_trio(
    imp: Importer, node: CNode, settings: dict[str, Any], wires: dict[str, str]
) -> tuple[str, str]:
    """Scheduler + Guidance + Sampler for one ComfyUI sampler: `settings` has seed, steps, cfg,
    sampler_name, scheduler, denoise; `wires` maps our Sampler/Guidance inputs to ComfyUI input names."""
    name, sigmas = str(settings["sampler_name"]), str(settings["scheduler"])
    ours, exact = SAMPLERS.get(name, ("euler", False))
    spacing, exact_sigmas = SIGMAS.get(sigmas, ("simple", False))
    if not exact:
        imp.approx(node, f"sampler {name} runs as {ours}")
    if not exact_sigmas:
        imp.approx(node, f"scheduler {sigmas} runs as the '{spacing}' spacing")
    schedule = imp.add(
        node,
        "sampling.scheduler",
        {"scheduler": ours, "steps": int(settings["steps"]), "denoise": float(settings["denoise"]), "karras": False,
         "sigmas": spacing, "timesteps": "", "shift": 0.0},
        suffix="schedule",
        offset=(-300, 0),
    )  # fmt: skip
    guidance = imp.add(
        node,
        "sampling.guidance",
        {"method": "cfg", "scale": float(settings["cfg"])},
        suffix="guidance",
        offset=(-300, 240),
    )
    sampler = imp.add(node, "sampling.sampler", {"seed": int(settings["seed"])})
    imp.edges += [(schedule, "schedule", sampler, "schedule"), (guidance, "guider", sampler, "guider")]
    for port, theirs in wires.items():
        target = guidance if port == "guidance.model" else sampler
        imp.input(node, theirs, target, port.split(".")[-1])
    imp.output(node, 0, sampler, "latent")
    imp.trios.append((sampler, schedule, guidance))
    return sampler, guidance


# our Sampler / Guidance input -> the KSampler input that feeds it
KSAMPLER_WIRES = {"model": "model", "guidance.model": "model", "positive": "positive", "negative": "negative",
                  "latent": "latent_image"}  # fmt: skip


@converts("KSampler")
def _ksampler(imp: Importer, node: CNode) -> None:
    settings = {k: imp.value(node, k, d) for k, d in (("seed", 0), ("steps", 20), ("cfg", 8.0), ("sampler_name", "euler"),
                                                          ("scheduler", "normal"), ("denoise", 1.0))}  # fmt: skip
    sampler_trio(imp, node, settings, KSAMPLER_WIRES)


@converts("KSamplerAdvanced")
def _ksampler_advanced(imp: Importer, node: CNode) -> None:
    steps = int(imp.value(node, "steps", 20))
    start, end = int(imp.value(node, "start_at_step", 0)), int(imp.value(node, "end_at_step", 10000))
    if end < steps or imp.value(node, "return_with_leftover_noise", "disable") == "enable":
        imp.approx(
            node,
            "stopping before the last step (end_at_step, leftover noise) is not available: it runs to the end",
        )
    if imp.value(node, "add_noise", "enable") == "disable":
        imp.approx(node, "add_noise disable is not available: noise is added")
    settings = {
        "seed": imp.value(node, "noise_seed", 0),
        "steps": steps,
        "cfg": imp.value(node, "cfg", 8.0),
        "sampler_name": imp.value(node, "sampler_name", "euler"),
        "scheduler": imp.value(node, "scheduler", "normal"),
        "denoise": max(0.0, 1.0 - start / steps) if steps else 1.0,
    }
    sampler_trio(imp, node, settings, KSAMPLER_WIRES)


@converts("SamplerCustomAdvanced")
def _custom(imp: Importer, node: CNode) -> None:
    """noise (RandomNoise), guider (BasicGuider / CFGGuider), sampler (KSamplerSelect), sigmas
    (BasicScheduler) and the latent: their values gathered into Scheduler + Guidance + Sampler."""
    parts = {name: imp.workflow.nodes.get(link[0]) for name, link in node.links.items()}
    noise, guider, chooser, sigmas = (parts.get(k) for k in ("noise", "guider", "sampler", "sigmas"))
    settings = {
        "seed": imp.value(noise, "noise_seed", 0) if noise else 0,
        "sampler_name": imp.value(chooser, "sampler_name", "euler") if chooser else "euler",
        "scheduler": imp.value(sigmas, "scheduler", "simple") if sigmas else "simple",
        "steps": imp.value(sigmas, "steps", 20) if sigmas else 20,
        "denoise": imp.value(sigmas, "denoise", 1.0) if sigmas else 1.0,
        "cfg": imp.value(guider, "cfg", 1.0) if guider is not None and guider.type == "CFGGuider" else 1.0,
    }
    if guider is None or guider.type not in ("BasicGuider", "CFGGuider"):
        imp.approx(node, "its guider is not BasicGuider or CFGGuider: CFG 1 is used")
    sampler, guidance = sampler_trio(imp, node, settings, {"latent": "latent_image"})
    if guider is not None:  # the guider's model and prompts feed our Sampler and Guidance
        positive = "positive" if guider.type == "CFGGuider" else "conditioning"
        imp.borrowed += [(guider, "model", sampler, "model"), (guider, "model", guidance, "model"),
                         (guider, positive, sampler, "positive"), (guider, "negative", sampler, "negative")]  # fmt: skip
    imp.output(node, 1, sampler, "latent")


@converts("RandomNoise", "KSamplerSelect", "BasicScheduler", "BasicGuider", "CFGGuider")
def _parts(imp: Importer, node: CNode) -> None:
    """Read by SamplerCustomAdvanced; nothing of their own."""
    imp.outputs[(node.id, 0)] = None
