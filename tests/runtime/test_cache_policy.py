"""Cache policies as plain data: schedules keyed by step index, validation, adaptive planning (no torch)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from app.runtime.step_cache import (
    AdaptiveCache,
    CacheError,
    DeepCache,
    NoCache,
    PyramidBroadcast,
    make_policy,
)
from app.runtime.step_cache.adaptive import plan_refreshes


def test_uniform_schedule_refreshes_every_interval_steps():
    assert sorted(DeepCache(interval=3).full_steps(10)) == [0, 3, 6, 9]
    assert sorted(DeepCache(interval=1).full_steps(5)) == [0, 1, 2, 3, 4]
    assert sorted(DeepCache(interval=5).full_steps(3)) == [0]


def test_start_and_end_steps_always_run_in_full():
    full = DeepCache(interval=4, start=2, end=3).full_steps(20)
    assert {0, 1, 17, 18, 19} <= full
    assert sorted(full - {0, 1, 17, 18, 19}) == [2, 6, 10, 14]
    assert DeepCache(interval=4, start=15, end=15).full_steps(20) == frozenset(range(20))


@pytest.mark.parametrize("steps,interval", [(10, 2), (20, 3), (25, 5), (50, 3), (7, 7), (4, 2)])
def test_non_uniform_spends_the_same_budget_denser_at_the_ends(steps, interval):
    uniform = DeepCache(interval=interval).full_steps(steps)
    dense = sorted(DeepCache(interval=interval, schedule="non_uniform").full_steps(steps))
    assert len(dense) == len(uniform) == math.ceil(steps / interval)
    assert dense[0] == 0 and all(0 <= s < steps for s in dense)
    if len(dense) >= 4:
        gaps = [b - a for a, b in zip(dense, dense[1:], strict=False)]
        assert gaps[0] < max(gaps) and gaps[-1] < max(gaps)


def test_adaptive_plan_is_kept_and_rescaled_to_other_loop_lengths():
    policy = AdaptiveCache(plan=(9, 0, 3, 3), plan_steps=10)
    assert policy.plan == (0, 3, 9)
    assert policy.full_steps(10) == {0, 3, 9}
    assert policy.full_steps(19) == {0, 6, 18}
    with pytest.raises(CacheError, match="start at step 0"):
        AdaptiveCache(plan=(1, 4), plan_steps=10)
    with pytest.raises(CacheError, match="below 10"):
        AdaptiveCache(plan=(0, 10), plan_steps=10)


def test_policies_are_frozen_plain_data_with_a_strategy_name():
    params = {"strategy": "deepcache", "interval": 2, "branch": 1, "schedule": "non_uniform", "plan": ""}
    policy = make_policy("deepcache", params)
    assert policy == DeepCache(interval=2, branch=1, schedule="non_uniform")
    assert dataclasses.asdict(policy) == {
        "interval": 2,
        "branch": 1,
        "schedule": "non_uniform",
        "start": 0,
        "end": 0,
    }
    assert hash(policy) == hash(DeepCache(interval=2, branch=1, schedule="non_uniform"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.interval = 3
    assert [make_policy(s).strategy for s in ("none", "deepcache", "pab", "adaptive")] == [
        "none",
        "deepcache",
        "pab",
        "adaptive",
    ]
    assert isinstance(make_policy("none"), NoCache) and isinstance(make_policy("pab"), PyramidBroadcast)


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: DeepCache(interval=0), "interval"),
        (lambda: DeepCache(branch=-1), "branch"),
        (lambda: DeepCache(schedule="random"), "schedule"),
        (lambda: PyramidBroadcast(self_interval=True), "self_interval"),
        (lambda: make_policy("teacache"), "unknown cache strategy"),
        (lambda: DeepCache().full_steps(0), "total_steps"),
    ],
)
def test_bad_params_raise_a_clear_cache_error(build, message):
    with pytest.raises(CacheError, match=message):
        build()


def test_plan_refreshes_puts_full_passes_where_the_feature_jumps():
    # Features are constant within 0..3, 4..6 and 7..9 and jump in between: refresh at 0, 4 and 7.
    group = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    cost = [[0.0 if group[r] == group[i] else 1.0 for i in range(10)] for r in range(10)]
    assert plan_refreshes(cost, 3) == (0, 4, 7)
    assert plan_refreshes(cost, 1) == (0,)
    assert plan_refreshes(cost, 99) == tuple(range(10))


def test_plan_refreshes_matches_brute_force_on_a_drifting_feature():
    import itertools

    position = [0.0, 0.5, 0.7, 0.8, 0.85, 0.9, 1.4, 2.0, 2.1, 2.15]
    cost = [[abs(position[i] - position[r]) for i in range(10)] for r in range(10)]

    def total(plan):
        starts = list(plan) + [10]
        return sum(cost[a][i] for a, b in zip(starts, starts[1:], strict=False) for i in range(a + 1, b))

    best = min(((0, *rest) for rest in itertools.combinations(range(1, 10), 3)), key=total)
    assert total(plan_refreshes(cost, 4)) == pytest.approx(total(best))
