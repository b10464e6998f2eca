"""Feature caching across denoising steps (the Step Cache node's runtime): policies and the denoisers that apply them.

Import the policy types and `open_denoiser` from here; torch is only imported when a denoiser is opened. Never
import Qt.
"""

from app.runtime.step_cache.base import CacheError, open_denoiser
from app.runtime.step_cache.policy import (
    STRATEGIES,
    AdaptiveCache,
    CachePolicy,
    DeepCache,
    FirstBlockCache,
    MagCache,
    NoCache,
    PyramidBroadcast,
    TaylorSeer,
    make_policy,
)

__all__ = [
    "STRATEGIES",
    "AdaptiveCache",
    "CacheError",
    "CachePolicy",
    "DeepCache",
    "FirstBlockCache",
    "MagCache",
    "NoCache",
    "PyramidBroadcast",
    "TaylorSeer",
    "make_policy",
    "open_denoiser",
]
