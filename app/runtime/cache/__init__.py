"""Feature caching across denoising steps (the Cache node's runtime): policies and the runners that apply them.

Import the policy types from here; torch is only imported when a policy is applied. Never import Qt.
"""

from app.runtime.cache.policy import (
    STRATEGIES,
    AdaptiveCache,
    CacheError,
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
]
