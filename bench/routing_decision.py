"""CPU cost of one routing decision, per strategy, for a public model with 10 deployments.

    .venv/bin/python bench/routing_decision.py [--deployments 10] [--decisions 20000]

Prints microseconds of process CPU time per `decide()` call (the best of five runs,
so a scheduler hiccup does not count). The deployments are stand-ins with the
attributes a strategy reads; the stats hold a latency and some load for each, as
they would in a busy process. The target is under 50 us per decision.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.strategies import STRATEGY_NAMES, DeploymentStats, decide  # noqa: E402

RUNS = 5


@dataclass(frozen=True, slots=True)
class StandIn:
    id: int
    priority: int
    weight: int
    provider_name: str
    upstream_model: str

    @property
    def name(self) -> str:
        # Built on each access, as RouteInfo.name is.
        return f"{self.provider_name}/{self.upstream_model}"


def deployments(count: int) -> list[StandIn]:
    return [StandIn(i + 1, i % 3, 1 + i % 4, f"provider-{i}", "gpt-4o") for i in range(count)]


def busy_stats(routes: list[StandIn], rng: random.Random) -> DeploymentStats:
    stats = DeploymentStats()
    for route in routes:
        for _ in range(rng.randrange(4)):
            stats.started(route.id)
        stats.started(route.id)
        stats.finished(route.id, latency=rng.uniform(0.2, 2.0), ttfb=rng.uniform(0.05, 0.5), ok=True)
    return stats


def per_decision_us(strategy: str, routes: list[StandIn], decisions: int) -> float:
    rng = random.Random(7)
    stats = busy_stats(routes, rng)
    prices = {route.id: 1e-6 * (1 + route.id % 5) for route in routes}
    cost = lambda route: prices.get(route.id)  # noqa: E731 - the shape the routing loop passes
    best = float("inf")
    for _ in range(RUNS):
        start = time.process_time_ns()
        for _ in range(decisions):
            decide(strategy, routes, stats, cost=cost, rng=rng)
        best = min(best, (time.process_time_ns() - start) / decisions / 1000)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=10)
    parser.add_argument("--decisions", type=int, default=20_000)
    args = parser.parse_args()
    routes = deployments(args.deployments)
    print(f"{args.deployments} deployments, {args.decisions} decisions per run, best of {RUNS} runs")
    print(f"{'strategy':<12} {'us/decision':>12}")
    for strategy in STRATEGY_NAMES:
        print(f"{strategy:<12} {per_decision_us(strategy, routes, args.decisions):>12.2f}")


if __name__ == "__main__":
    main()
