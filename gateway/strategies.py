"""Routing strategies: which deployment of a public model serves a call, and in what order the rest are tried.

`decide()` is pure: no I/O, no Django, no database. It gets the deployments that are
left once capabilities, breakers, pins and cost caps have filtered them, the
process-local `DeploymentStats`, a price function and a random source, and returns
the whole try order with a short reason for the `x-portico-routing` header.

| strategy     | first choice                                                  | failover order                  |
|--------------|---------------------------------------------------------------|---------------------------------|
| `priority`   | lowest `priority` (ties: id)                                  | the same order                  |
| `weighted`   | random, with chance weight / total weight                     | weighted sampling without       |
|              |                                                               | replacement; weight 0 last      |
| `least-busy` | fewest requests in flight (ties: priority, then random)       | the same key                    |
| `latency`    | power of two choices: two drawn by weight, the lower score    | by score                        |
|              | wins; score = latency EWMA x (in flight + 1); within 10% is a |                                 |
|              | tie, won by fewer in flight, then by the first drawn          |                                 |
| `cost`       | cheapest known blended price (ties: priority, id)             | by price; unknown prices last   |

Weight 0 marks a standby: `weighted` and `latency` reach it only when no deployment
with a weight is left to choose, and then in priority order.

`latency` compares two deployments rather than taking the fastest outright so that
one fast deployment is not sent every call at once (its in-flight penalty would only
catch up after it was flooded). A deployment with no recent sample is explored: it
is scored as the best known latency and wins ties, so it gets one probe at a time.
Among deployments about as fast as each other, calls are shared by weight.

Every strategy sorts at most once over a handful of deployments; with 10 of them a
decision costs a few microseconds (`bench/routing_decision.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from random import Random
from typing import Any, Generic, Protocol, TypeVar


class Deployment(Protocol):
    """The attributes of a deployment (`providers.facade.RouteInfo`) a strategy reads."""

    @property
    def id(self) -> int: ...

    @property
    def priority(self) -> int: ...

    @property
    def weight(self) -> int: ...

    @property
    def name(self) -> str: ...


R = TypeVar("R", bound=Deployment)


@dataclass(frozen=True, slots=True)
class Decision(Generic[R]):
    order: tuple[R, ...]  # first = chosen, the rest = failover order
    reason: str  # short, ASCII, no commas: for the x-portico-routing header


class _Record:
    __slots__ = ("ewma", "in_flight", "updated")

    def __init__(self) -> None:
        self.in_flight = 0
        self.ewma: float | None = None
        self.updated = 0.0


class DeploymentStats:
    """Per-deployment load and latency as this process has seen them; O(1) per update.

    Used from the event loop's thread only, so it takes no lock. The latency is an
    EWMA of the time to first token when the call streamed and it is known, else of
    the whole call. A sample older than `stale_after` seconds says nothing about the
    deployment now: it is forgotten, so a deployment that slowed down and lost its
    traffic is probed again and can win it back once it recovers.

    A failed call must never make a deployment look fast (a 500 in 5 ms would win
    every latency comparison), so it counts as at least `failure_floor` seconds and
    twice the current average.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.3,
        stale_after: float = 30.0,
        failure_floor: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], not {alpha}")
        self._alpha = alpha
        self._stale_after = stale_after
        self._failure_floor = failure_floor
        self._clock = clock
        self._records: dict[int, _Record] = {}

    def _record(self, route_id: int) -> _Record:
        record = self._records.get(route_id)
        if record is None:
            record = self._records[route_id] = _Record()
        return record

    def started(self, route_id: int) -> None:
        self._record(route_id).in_flight += 1

    def finished(self, route_id: int, *, latency: float, ttfb: float | None, ok: bool) -> None:
        record = self._record(route_id)
        if record.in_flight > 0:
            record.in_flight -= 1
        now = self._clock()
        previous = record.ewma
        if previous is not None and now - record.updated > self._stale_after:
            previous = None
        sample = latency if ttfb is None else ttfb
        if not ok:
            sample = max(sample, self._failure_floor, 2.0 * previous if previous is not None else 0.0)
        record.ewma = sample if previous is None else previous + self._alpha * (sample - previous)
        record.updated = now

    def in_flight(self, route_id: int) -> int:
        record = self._records.get(route_id)
        return 0 if record is None else record.in_flight

    def latency(self, route_id: int) -> float | None:
        """The EWMA in seconds, or None when there is no sample from the last `stale_after` seconds."""
        record = self._records.get(route_id)
        if record is None or record.ewma is None or self._clock() - record.updated > self._stale_after:
            return None
        return record.ewma


Cost = Callable[[R], float | None]
_by_priority = attrgetter("priority", "id")
# Latency scores this close count as equal: a few percent of noise must not decide, or
# one unlucky sample would keep an equal deployment out until its average goes stale.
_NEAR_LOW, _NEAR_HIGH = 1 / 1.1, 1.1


def decide(strategy: str, routes: Sequence[R], stats: DeploymentStats, *, cost: Cost[R], rng: Random) -> Decision[R]:
    """The try order of `routes` under `strategy`; an empty order when no deployment is left."""
    choose = _STRATEGIES.get(strategy)
    if choose is None:
        raise ValueError(f"unknown routing strategy {strategy!r}; expected one of {', '.join(_STRATEGIES)}")
    if len(routes) < 2:
        if not routes:
            return Decision((), f"strategy={strategy}; no deployment left")
        return Decision((routes[0],), _reason(strategy, routes[0], "only deployment"))
    return choose(routes, stats, cost, rng)


def _priority(routes: Sequence[R], stats: DeploymentStats, cost: Cost[R], rng: Random) -> Decision[R]:
    order = sorted(routes, key=_by_priority)
    first = order[0]
    return Decision(tuple(order), _reason("priority", first, f"priority {first.priority}"))


def _weighted(routes: Sequence[R], stats: DeploymentStats, cost: Cost[R], rng: Random) -> Decision[R]:
    # Sorting by an exponential draw of rate `weight` is weighted sampling without
    # replacement (Efraimidis-Spirakis): the smallest of independent exponentials
    # is deployment i with chance w_i / W, and so on down the order.
    draw = rng.expovariate
    keyed = sorted((draw(route.weight), index) for index, route in enumerate(routes) if route.weight > 0)
    order = [routes[index] for _, index in keyed]
    if len(order) < len(routes):
        order.extend(sorted((route for route in routes if route.weight <= 0), key=_by_priority))
    first = order[0]
    if first.weight > 0:
        why = f"weight {first.weight} of {sum(route.weight for route in routes if route.weight > 0)}"
    else:
        why = "weight 0 and no weighted deployment left"
    return Decision(tuple(order), _reason("weighted", first, why))


def _least_busy(routes: Sequence[R], stats: DeploymentStats, cost: Cost[R], rng: Random) -> Decision[R]:
    load = stats.in_flight
    keyed = sorted((load(route.id), route.priority, rng.random(), index) for index, route in enumerate(routes))
    order = tuple(routes[entry[3]] for entry in keyed)
    return Decision(order, _reason("least-busy", order[0], f"{keyed[0][0]} in flight vs {keyed[1][0]}"))


def _latency(routes: Sequence[R], stats: DeploymentStats, cost: Cost[R], rng: Random) -> Decision[R]:
    seen = [(stats.latency(route.id), stats.in_flight(route.id)) for route in routes]
    known = [ewma for ewma, _ in seen if ewma is not None]
    prior = min(known) if known else 0.0
    scores = [(prior if ewma is None else ewma) * (busy + 1) for ewma, busy in seen]

    def score(index: int) -> tuple[float, int, bool, int, int]:
        route = routes[index]
        return (scores[index], seen[index][1], seen[index][0] is not None, route.priority, route.id)

    pair = _two_by_weight(routes, rng)
    if len(pair) == 1:
        winner = pair[0]
        why = f"only weighted deployment: {_latency_label(seen[winner])}"
    else:
        a, b = pair
        near = scores[b] * _NEAR_LOW <= scores[a] <= scores[b] * _NEAR_HIGH
        if near:
            # Fewer in flight, then the one still unknown (exploration), then the first drawn.
            a_wins = (seen[a][1], seen[a][0] is not None) <= (seen[b][1], seen[b][0] is not None)
        else:
            a_wins = scores[a] < scores[b]
        winner, other = (a, b) if a_wins else (b, a)
        why = f"{_latency_label(seen[winner])} vs {_latency_label(seen[other])}{' near tie' if near else ''}"
    rest = sorted((index for index in range(len(routes)) if index != winner), key=score)
    order = (routes[winner], *(routes[index] for index in rest))
    return Decision(order, _reason("latency", order[0], why))


def _two_by_weight(routes: Sequence[Deployment], rng: Random) -> tuple[int, ...]:
    """Two distinct indices drawn by weight; one when a single deployment has a weight."""
    weighted = [index for index, route in enumerate(routes) if route.weight > 0]
    if len(weighted) == 1:
        return (weighted[0],)
    if not weighted:
        first, second = rng.sample(range(len(routes)), 2)
        return first, second
    total = sum(routes[index].weight for index in weighted)
    first = _pick(routes, weighted, total, -1, rng)
    second = _pick(routes, weighted, total - routes[first].weight, first, rng)
    return first, second


def _pick(routes: Sequence[Deployment], candidates: list[int], total: int, skip: int, rng: Random) -> int:
    point = rng.random() * total
    chosen = -1
    for index in candidates:
        if index == skip:
            continue
        chosen = index
        point -= routes[index].weight
        if point < 0:
            break
    # Float rounding can leave `point` a hair above 0 after the last one: it is then the last.
    return chosen


def _latency_label(seen: tuple[float | None, int]) -> str:
    ewma, busy = seen
    label = "no data yet" if ewma is None else f"ewma {ewma * 1000:.0f} ms"
    return f"{label} {busy} in flight" if busy else label


def _cost(routes: Sequence[R], stats: DeploymentStats, cost: Cost[R], rng: Random) -> Decision[R]:
    keyed = []
    for index, route in enumerate(routes):
        price = cost(route)
        keyed.append((price is None, 0.0 if price is None else price, route.priority, route.id, index))
    keyed.sort()
    order = tuple(routes[entry[4]] for entry in keyed)
    first, second = keyed[0], keyed[1]
    if first[0]:
        why = "no deployment has a known price"
    else:
        why = f"{_per_million(first)} vs {'unknown' if second[0] else _per_million(second)}"
    return Decision(order, _reason("cost", order[0], why))


def _per_million(entry: tuple[bool, float, int, int, int]) -> str:
    return f"USD {entry[1] * 1_000_000:.4g}/M tokens"


def _reason(strategy: str, route: Deployment, why: str) -> str:
    return f"strategy={strategy}; chose {_header_safe(route.name)} ({why})"


def _header_safe(name: str) -> str:
    # Operators name providers freely; a header value must stay printable ASCII, and
    # commas and semicolons would read as separators.
    if name.isascii() and name.isprintable() and "," not in name and ";" not in name:
        return name
    return "".join(char if " " <= char <= "~" and char not in ",;" else "?" for char in name)


# Any: each strategy is generic in the deployment type, which a dict value cannot say.
_STRATEGIES: dict[str, Callable[[Sequence[Any], DeploymentStats, Cost[Any], Random], Decision[Any]]] = {
    "priority": _priority,
    "weighted": _weighted,
    "least-busy": _least_busy,
    "latency": _latency,
    "cost": _cost,
}
STRATEGY_NAMES = tuple(_STRATEGIES)
