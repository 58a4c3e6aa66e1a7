"""Routing strategies and the per-deployment stats they read: pure, seeded, on a controlled clock."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from random import Random

import pytest

from gateway.strategies import STRATEGY_NAMES, Decision, DeploymentStats, decide

DECISIONS = 10_000


@dataclass(frozen=True, slots=True)
class Route:
    """A stand-in for providers.facade.RouteInfo with the attributes a strategy reads."""

    id: int
    priority: int = 0
    weight: int = 1
    provider: str = ""

    @property
    def name(self) -> str:
        return f"{self.provider or f'p{self.id}'}/gpt-4o"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def no_price(route: Route) -> float | None:
    return None


def run(
    strategy: str,
    routes: Sequence[Route],
    stats: DeploymentStats | None = None,
    *,
    seed: int = 1,
    cost: Callable[[Route], float | None] = no_price,
) -> Decision[Route]:
    return decide(strategy, routes, stats or DeploymentStats(), cost=cost, rng=Random(seed))


def ids(decision: Decision[Route]) -> list[int]:
    return [route.id for route in decision.order]


def shares(strategy: str, routes: Sequence[Route], stats: DeploymentStats, *, position: int = 0) -> dict[int, float]:
    rng = Random(42)
    counts = Counter(
        decide(strategy, routes, stats, cost=no_price, rng=rng).order[position].id for _ in range(DECISIONS)
    )
    return {route.id: counts[route.id] / DECISIONS for route in routes}


def stats_with(latencies: dict[int, float], in_flight: dict[int, int] | None = None) -> DeploymentStats:
    stats = DeploymentStats(clock=Clock())
    for route_id, seconds in latencies.items():
        stats.finished(route_id, latency=seconds, ttfb=None, ok=True)
    for route_id, count in (in_flight or {}).items():
        for _ in range(count):
            stats.started(route_id)
    return stats


# DeploymentStats


def test_it_counts_requests_in_flight_and_never_below_zero() -> None:
    stats = DeploymentStats()
    stats.started(1)
    stats.started(1)
    stats.started(2)
    stats.finished(1, latency=0.1, ttfb=None, ok=True)
    stats.finished(2, latency=0.1, ttfb=None, ok=True)
    stats.finished(2, latency=0.1, ttfb=None, ok=True)
    assert (stats.in_flight(1), stats.in_flight(2), stats.in_flight(3)) == (1, 0, 0)


@pytest.mark.parametrize(
    ("alpha", "samples", "expected"),
    [
        (0.3, [0.5], 0.5),
        (0.3, [0.5, 1.5], 0.8),
        (0.5, [1.0, 0.0, 0.0], 0.25),
        (1.0, [0.2, 0.9], 0.9),
    ],
)
def test_it_keeps_an_exponentially_weighted_average_of_latency(
    alpha: float, samples: list[float], expected: float
) -> None:
    stats = DeploymentStats(alpha=alpha, clock=Clock())
    for sample in samples:
        stats.finished(1, latency=sample, ttfb=None, ok=True)
    assert stats.latency(1) == pytest.approx(expected)


def test_it_averages_time_to_first_token_when_a_stream_reports_it() -> None:
    stats = DeploymentStats(clock=Clock())
    stats.finished(1, latency=4.0, ttfb=0.25, ok=True)
    assert stats.latency(1) == 0.25


@pytest.mark.parametrize(
    ("before", "failure", "expected"),
    [
        (None, 0.005, 1.0),  # a fast first failure still counts the floor
        (0.2, 0.005, 0.2 + 0.3 * (1.0 - 0.2)),
        (3.0, 0.005, 3.0 + 0.3 * (6.0 - 3.0)),  # twice the average when that is above the floor
        (0.2, 5.0, 0.2 + 0.3 * (5.0 - 0.2)),  # a slow failure counts its own time
    ],
)
def test_it_never_lets_a_failed_call_make_a_deployment_look_fast(
    before: float | None, failure: float, expected: float
) -> None:
    stats = DeploymentStats(clock=Clock())
    if before is not None:
        stats.finished(1, latency=before, ttfb=None, ok=True)
    stats.finished(1, latency=failure, ttfb=None, ok=False)
    assert stats.latency(1) == pytest.approx(expected)


def test_it_forgets_a_latency_older_than_stale_after_and_starts_afresh() -> None:
    clock = Clock()
    stats = DeploymentStats(stale_after=30.0, clock=clock)
    stats.finished(1, latency=2.0, ttfb=None, ok=True)
    clock.now += 30.0
    assert stats.latency(1) == 2.0
    clock.now += 0.5
    assert stats.latency(1) is None
    stats.finished(1, latency=0.1, ttfb=None, ok=True)
    assert stats.latency(1) == 0.1


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5])
def test_it_rejects_an_alpha_outside_zero_to_one(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        DeploymentStats(alpha=alpha)


# decide, whatever the strategy


def test_its_strategies_are_the_ones_a_public_model_may_name() -> None:
    facade = pytest.importorskip("providers.facade")
    if not hasattr(facade, "STRATEGIES"):
        pytest.skip("providers.facade does not list its strategies yet")
    assert set(STRATEGY_NAMES) == set(facade.STRATEGIES)


def test_it_refuses_an_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="round-robin"):
        run("round-robin", [Route(1)])


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_it_serves_the_only_deployment_and_says_so(strategy: str) -> None:
    decision = run(strategy, [Route(7, weight=0)])
    assert ids(decision) == [7]
    assert decision.reason == f"strategy={strategy}; chose p7/gpt-4o (only deployment)"


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_it_returns_an_empty_order_when_no_deployment_is_left(strategy: str) -> None:
    assert run(strategy, []).order == ()


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
@pytest.mark.parametrize("seed", range(5))
def test_it_orders_every_deployment_exactly_once(strategy: str, seed: int) -> None:
    routes = [Route(i, priority=i % 3, weight=i % 4) for i in range(1, 11)]
    stats = stats_with({1: 0.3, 4: 0.1, 9: 0.2}, {4: 2, 5: 1})
    decision = run(strategy, routes, stats, seed=seed, cost=lambda route: route.id * 1e-6 if route.id % 2 else None)
    assert sorted(ids(decision)) == list(range(1, 11))


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_its_reason_is_a_safe_header_value_naming_the_choice(strategy: str) -> None:
    routes = [Route(1, provider="Zürich, east"), Route(2, provider="west;\r\nx-evil: 1")]
    decision = run(strategy, routes, stats_with({1: 0.2, 2: 0.4}), cost=lambda route: 1e-6)
    chosen = "Z?rich? east/gpt-4o" if decision.order[0].id == 1 else "west???x-evil: 1/gpt-4o"
    assert decision.reason.startswith(f"strategy={strategy}; chose {chosen} (")
    assert decision.reason.isascii()
    assert decision.reason.isprintable()
    assert "," not in decision.reason


# priority


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        ([Route(1, priority=0), Route(2, priority=1)], [1, 2]),
        ([Route(1, priority=5), Route(2, priority=1), Route(3, priority=3)], [2, 3, 1]),
        ([Route(3, priority=1), Route(2, priority=1), Route(1, priority=2)], [2, 3, 1]),
        ([Route(1, priority=0, weight=0), Route(2, priority=1, weight=9)], [1, 2]),
    ],
)
def test_priority_tries_the_lowest_priority_first_then_the_next(routes: list[Route], expected: list[int]) -> None:
    busy = stats_with({}, {expected[0]: 50})
    decision = run("priority", routes, busy)
    assert ids(decision) == expected
    assert decision.reason.endswith(f"(priority {decision.order[0].priority})")


# weighted


@pytest.mark.parametrize(
    "weights",
    [
        [1, 1],
        [3, 1],
        [5, 3, 1, 1, 0],
        [1, 2, 3, 4, 1, 2, 3, 4, 1, 2],
    ],
)
def test_weighted_chooses_each_deployment_within_three_points_of_its_weight_share(weights: list[int]) -> None:
    routes = [Route(i, weight=weight) for i, weight in enumerate(weights, start=1)]
    observed = shares("weighted", routes, DeploymentStats())
    total = sum(weights)
    for route in routes:
        # Absolute percentage points: the seeded runs land within 1.1 point of every share.
        assert observed[route.id] == pytest.approx(route.weight / total, abs=0.03)


def test_weighted_orders_the_failover_by_weight_too() -> None:
    routes = [Route(1, weight=2), Route(2, weight=1), Route(3, weight=1)]
    second = shares("weighted", routes, DeploymentStats(), position=1)
    # P(1 second) = P(2 first) * 2/3 + P(3 first) * 2/3 = 1/3; the others share the rest.
    assert second == pytest.approx({1: 1 / 3, 2: 1 / 3, 3: 1 / 3}, abs=0.03)


def test_weighted_reaches_a_weight_zero_deployment_only_after_every_weighted_one() -> None:
    routes = [Route(1, weight=0, priority=0), Route(2, weight=1, priority=1), Route(3, weight=0, priority=2)]
    for seed in range(20):
        assert ids(run("weighted", routes, seed=seed)) == [2, 1, 3]


def test_weighted_chooses_by_priority_when_every_weight_is_zero() -> None:
    routes = [Route(1, weight=0, priority=2), Route(2, weight=0, priority=1)]
    decision = run("weighted", routes)
    assert ids(decision) == [2, 1]
    assert decision.reason.endswith("(weight 0 and no weighted deployment left)")


def test_weighted_says_which_weight_won() -> None:
    decision = run("weighted", [Route(1, weight=3), Route(2, weight=1), Route(3, weight=0)], seed=3)
    assert decision.reason.endswith(f"(weight {decision.order[0].weight} of 4)")


# least-busy


@pytest.mark.parametrize(
    ("routes", "in_flight", "expected", "why"),
    [
        ([Route(1), Route(2), Route(3)], {1: 3, 2: 1, 3: 2}, [2, 3, 1], "1 in flight vs 2"),
        ([Route(1, priority=1), Route(2, priority=0)], {}, [2, 1], "0 in flight vs 0"),
        ([Route(1, priority=0), Route(2, priority=9)], {1: 1}, [2, 1], "0 in flight vs 1"),
    ],
)
def test_least_busy_chooses_the_fewest_requests_in_flight_then_the_priority(
    routes: list[Route], in_flight: dict[int, int], expected: list[int], why: str
) -> None:
    decision = run("least-busy", routes, stats_with({}, in_flight))
    assert ids(decision) == expected
    assert decision.reason.endswith(f"({why})")


def test_least_busy_breaks_a_full_tie_at_random() -> None:
    observed = shares("least-busy", [Route(1), Route(2), Route(3)], stats_with({}, {3: 1}))
    assert observed == pytest.approx({1: 0.5, 2: 0.5, 3: 0.0}, abs=0.03)


# latency


@pytest.mark.parametrize(
    ("latencies", "in_flight", "expected", "why"),
    [
        ({1: 0.5, 2: 0.2}, {}, 2, "ewma 200 ms vs ewma 500 ms"),
        # 0.2 x (3 + 1) = 0.8 > 0.5 x 1: a fast deployment already busy loses.
        ({1: 0.5, 2: 0.2}, {2: 3}, 1, "ewma 500 ms vs ewma 200 ms 3 in flight"),
        # A deployment without data is explored...
        ({1: 0.2}, {}, 2, "no data yet vs ewma 200 ms near tie"),
        # ...one probe at a time.
        ({1: 0.2}, {2: 1}, 1, "ewma 200 ms vs no data yet 1 in flight"),
        ({}, {1: 1}, 2, "no data yet vs no data yet 1 in flight near tie"),
        # Within 10% the one with fewer in flight wins, then the first drawn.
        ({1: 0.2, 2: 0.38}, {1: 1}, 2, "ewma 380 ms vs ewma 200 ms 1 in flight near tie"),
    ],
)
def test_latency_chooses_the_lower_score_of_the_pair(
    latencies: dict[int, float], in_flight: dict[int, int], expected: int, why: str
) -> None:
    decision = run("latency", [Route(1), Route(2)], stats_with(latencies, in_flight))
    assert ids(decision)[0] == expected
    assert decision.reason == f"strategy=latency; chose p{expected}/gpt-4o ({why})"


def test_latency_orders_the_failover_by_score() -> None:
    routes = [Route(i) for i in range(1, 6)]
    stats = stats_with({1: 0.5, 2: 0.1, 3: 0.3, 4: 0.2, 5: 0.4})
    for seed in range(20):
        order = ids(run("latency", routes, stats, seed=seed))
        assert order[1:] == sorted(order[1:], key=[0, 0.5, 0.1, 0.3, 0.2, 0.4].__getitem__)


def test_latency_does_not_flood_the_fastest_deployment() -> None:
    routes = [Route(i) for i in range(1, 11)]
    stats = stats_with({1: 0.1} | {i: 0.3 for i in range(2, 11)})
    # It wins only when drawn into the pair: 1 - 9/10 x 8/9 = 1/5 of the calls, not all of them.
    assert shares("latency", routes, stats)[1] == pytest.approx(0.2, abs=0.03)


def test_latency_draws_the_pair_by_weight() -> None:
    routes = [Route(1, weight=1), Route(2, weight=8), Route(3, weight=8)]
    stats = stats_with({1: 0.1, 2: 0.3, 3: 0.3})
    # The fastest is in the pair with chance 1 - (16/17 x 8/9); with equal weights it would be 2/3.
    assert shares("latency", routes, stats)[1] == pytest.approx(1 - 16 / 17 * 8 / 9, abs=0.03)


def test_latency_shares_calls_by_weight_among_deployments_about_as_fast() -> None:
    routes = [Route(1, weight=1), Route(2, weight=2), Route(3, weight=1), Route(4)]
    stats = stats_with({1: 0.20, 2: 0.21, 3: 0.205, 4: 0.5})
    # Within 10% is a tie, won by the first drawn: by weight, as long as the slow one is not in the pair.
    # P(4 drawn first) = 1/5, and then it loses; so each near one gets its weight share of the rest.
    observed = shares("latency", routes, stats)
    assert observed == pytest.approx({1: 0.25, 2: 0.5, 3: 0.25, 4: 0.0}, abs=0.03)


def test_latency_keeps_a_weight_zero_deployment_as_a_standby() -> None:
    routes = [Route(1, weight=0), Route(2, weight=1), Route(3, weight=0)]
    stats = stats_with({1: 0.1, 2: 0.9, 3: 0.2})
    for seed in range(20):
        decision = run("latency", routes, stats, seed=seed)
        assert ids(decision) == [2, 1, 3]
    assert decision.reason.endswith("(only weighted deployment: ewma 900 ms)")


def test_latency_moves_traffic_off_a_deployment_that_slows_down_and_back_when_it_recovers() -> None:
    clock = Clock()
    stats = DeploymentStats(stale_after=30.0, clock=clock)
    routes = [Route(1), Route(2), Route(3)]
    rng = Random(5)

    def serve(calls: int, latency: dict[int, float]) -> Counter[int]:
        chosen: Counter[int] = Counter()
        for _ in range(calls):
            route_id = decide("latency", routes, stats, cost=no_price, rng=rng).order[0].id
            stats.started(route_id)
            clock.now += 0.01  # 100 calls a second
            stats.finished(route_id, latency=latency[route_id] * rng.uniform(0.9, 1.1), ttfb=None, ok=True)
            chosen[route_id] += 1
        return chosen

    steady = serve(3000, {1: 0.2, 2: 0.2, 3: 0.2})
    assert min(steady.values()) > 600
    slow = serve(3000, {1: 0.2, 2: 0.2, 3: 0.8})
    assert slow[3] < 0.05 * min(slow[1], slow[2])
    # Its stale average is forgotten after 30 s, a probe finds it fast again, and it wins its share back.
    serve(3500, {1: 0.2, 2: 0.2, 3: 0.2})
    recovered = serve(3000, {1: 0.2, 2: 0.2, 3: 0.2})
    assert recovered[3] > 600


# cost


def priced(prices: dict[int, float | None]) -> Callable[[Route], float | None]:
    return lambda route: prices[route.id]


@pytest.mark.parametrize(
    ("routes", "prices", "expected", "why"),
    [
        (
            [Route(1), Route(2), Route(3)],
            {1: 5e-6, 2: 2.5e-6, 3: 1e-5},
            [2, 1, 3],
            "USD 2.5/M tokens vs USD 5/M tokens",
        ),
        ([Route(1, priority=1), Route(2, priority=0)], {1: 1e-6, 2: 1e-6}, [2, 1], "USD 1/M tokens vs USD 1/M tokens"),
        ([Route(1), Route(2), Route(3)], {1: None, 2: 3e-6, 3: None}, [2, 1, 3], "USD 3/M tokens vs unknown"),
        ([Route(1), Route(2)], {1: None, 2: 0.0}, [2, 1], "USD 0/M tokens vs unknown"),
        ([Route(1, priority=1), Route(2, priority=0)], {1: None, 2: None}, [2, 1], "no deployment has a known price"),
    ],
)
def test_cost_chooses_the_cheapest_known_price_then_the_priority(
    routes: list[Route], prices: dict[int, float | None], expected: list[int], why: str
) -> None:
    decision = run("cost", routes, cost=priced(prices))
    assert ids(decision) == expected
    assert decision.reason.endswith(f"({why})")
