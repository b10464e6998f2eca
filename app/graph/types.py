"""Socket types: what flows along a link, which links are allowed, and which types carry a model family.

Pure data: never import Qt, torch or anything heavy here.

A socket type is a plain upper-case string. Values of the types in `FAMILY_TYPES` carry a model family
("sd15", "sdxl", "tiny-shapes", ...) so a plan can refuse an SDXL ControlNet on an SD1.5 model before
anything runs. `ANY` accepts every type (used by generic nodes such as Preview).
"""

from __future__ import annotations

MODEL = "MODEL"
CLIP = "CLIP"
VAE = "VAE"
CONDITIONING = "CONDITIONING"
LATENT = "LATENT"
IMAGE = "IMAGE"
MASK = "MASK"
SCHEDULE = "SCHEDULE"
GUIDER = "GUIDER"
CONTROL_NET = "CONTROL_NET"
CACHE_POLICY = "CACHE_POLICY"
UPSCALE_MODEL = "UPSCALE_MODEL"
INT = "INT"
FLOAT = "FLOAT"
STRING = "STRING"
BOOL = "BOOL"
SEED = "SEED"
ANY = "ANY"

SOCKET_TYPES: tuple[str, ...] = (
    MODEL,
    CLIP,
    VAE,
    CONDITIONING,
    LATENT,
    IMAGE,
    MASK,
    SCHEDULE,
    GUIDER,
    CONTROL_NET,
    CACHE_POLICY,
    UPSCALE_MODEL,
    INT,
    FLOAT,
    STRING,
    BOOL,
    SEED,
    ANY,
)

# Types whose values know which model family they belong to.
FAMILY_TYPES: frozenset[str] = frozenset({MODEL, CLIP, VAE, CONDITIONING, LATENT, CONTROL_NET})

# Implicit widenings a link may perform (source type -> destination types it may feed).
_WIDENINGS: dict[str, frozenset[str]] = {
    INT: frozenset({FLOAT, SEED}),
    SEED: frozenset({INT}),
    BOOL: frozenset({INT}),
}

# Editor colours per type (hex RGB); the editor may theme them but the defaults live with the types.
COLOURS: dict[str, str] = {
    MODEL: "#b39ddb",
    CLIP: "#ffd54f",
    VAE: "#ef9a9a",
    CONDITIONING: "#ffab40",
    LATENT: "#f48fb1",
    IMAGE: "#64b5f6",
    MASK: "#81c784",
    SCHEDULE: "#4db6ac",
    GUIDER: "#ba68c8",
    CONTROL_NET: "#00acc1",
    CACHE_POLICY: "#90a4ae",
    UPSCALE_MODEL: "#7986cb",
    INT: "#9ccc65",
    FLOAT: "#aed581",
    STRING: "#e0e0e0",
    BOOL: "#ff8a65",
    SEED: "#dce775",
    ANY: "#bdbdbd",
}


def compatible(source: str, destination: str) -> bool:
    """Whether an output of type `source` may feed an input of type `destination`."""
    if source == destination or ANY in (source, destination):
        return True
    return destination in _WIDENINGS.get(source, frozenset())


# Model families whose latents are interchangeable (one VAE decodes them all): SD1.x and SD2 share one
# latent space, SDXL base and refiner another. A LATENT or VAE only has to match a model's latent space.
LATENT_SPACES: dict[str, str] = {"sd15": "sd", "sd2": "sd", "sdxl": "sdxl", "sdxl_refiner": "sdxl"}
LATENT_TYPES: frozenset[str] = frozenset({LATENT, VAE})


def latent_space(family: str) -> str:
    """The latent space of a model family (the family itself when it shares it with no other)."""
    return LATENT_SPACES.get(family, family)


def inputs_agree(typed: list[tuple[str | None, str | None]]) -> str | None:
    """The family of a node fed (socket type, family) pairs: models, text encoders, conditionings and
    ControlNets must share one family; latents and VAEs must share its latent space. Returns the model
    family when there is one, else the latents' family; raises ValueError naming what differs."""
    model = families_agree([family for kind, family in typed if kind not in LATENT_TYPES])
    latents = [family for kind, family in typed if kind in LATENT_TYPES and family]
    spaces = sorted({latent_space(f) for f in latents} | ({latent_space(model)} if model else set()))
    if len(spaces) > 1:
        raise ValueError(f"latent spaces differ: {', '.join(spaces)}")
    return model or (latents[0] if latents else None)


def families_agree(families: list[str | None]) -> str | None:
    """The one family shared by `families` (None entries are unknown and agree with anything).

    Raises ValueError naming the families when two known ones differ.
    """
    known = sorted({f for f in families if f})
    if len(known) > 1:
        raise ValueError(f"model families differ: {', '.join(known)}")
    return known[0] if known else None
