"""One Ray instance for the whole test session (start ~3 s, stop ~1.5 s on 2 cores), loopback only."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_session():
    pytest.importorskip("ray", reason="the ray extra (pip install -e '.[ray]'; CI installs it)")
    import ray

    from app.jobs.ray_backend import start_ray

    start_ray()
    yield ray
    ray.shutdown()
