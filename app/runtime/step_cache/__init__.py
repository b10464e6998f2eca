"""Feature caching across denoising steps (the Cache node's runtime): policies and the runners that apply them.

Import the policy types and `open_runner` from here; torch is only imported when a runner is opened. Never
import Qt.
"""

from app.runtime.cache.base import CacheError, open_runner
from app.runtime.cache.policy import (
    STRATEGIES,
    AdaptiveCache,
    CachePolicy,
    DeepCache,
    NoCache,
    PyramidBroadcast,
    make_policy,
)

__all__ = [
    "STRATEGIES",
    "AdaptiveCache",
    "CacheError",
    "CachePolicy",
    "DeepCache",
    "NoCache",
    "PyramidBroadcast",
    "make_policy",
    "open_runner",
]
