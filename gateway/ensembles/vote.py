"""Vote: several deployments asked at once, the answer most of them give taken.

`x-portico-votes` lists each distinct answer with its count, most votes first:
`positive=2,negative=1`. An answer is written as itself when it is at most 32
printable ASCII characters without `,;="#`, else as `#` and the first 10 hex digits
of its SHA-256 (`#3f2a9c01d4=2`). The header stays under VOTES_MAX_CHARS: answers
past that are summed into `...=<count>`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from gateway.ensembles.answers import NOT_JSON, answer_check, first_choice, parse_json
from gateway.ensembles.calls import Attempt, Calls, EnsembleResult, Outcome, answers, keep

if TYPE_CHECKING:
    from providers.facade import RouteInfo

VOTES_MAX_CHARS = 200
_LABEL_MAX_CHARS = 32


async def vote(routes: Sequence[RouteInfo], attempt: Attempt, n: int, request_body: dict[str, Any]) -> EnsembleResult:
    """The first `n` deployments at once; the answer most of them give, with the tally in `x-portico-votes`.

    Answers are compared normalised (whitespace collapsed, case folded, a final
    period dropped; an answer to a JSON `response_format` by its parsed value), so
    voting suits short, classification-style outputs. A failed, empty or tool-call
    answer does not vote. A tie goes to the answer whose first voter comes first in
    deployment order, and the client gets that voter's answer. Once a strict majority
    of the voters agree, the calls still running are cancelled. With no vote at
    all, the client gets the first answer that came back, else the last failure.
    """
    voters = tuple(routes[: max(n, 1)])
    if not voters:
        raise ValueError("an ensemble needs at least one deployment")
    position = {route.id: index for index, route in enumerate(voters)}
    as_json = answer_check(request_body) is not None
    calls = Calls(answers(attempt), keep)
    outcomes: list[Outcome] = []
    ballots: dict[str, list[int]] = {}  # normalised answer -> positions of its voters
    try:
        for route in voters:
            calls.start(route)
        while calls.pending and max(map(len, ballots.values()), default=0) <= len(voters) // 2:
            for done in await calls.next_done():
                outcome = done.value if done.value is not None else done.failure
                assert outcome is not None
                outcomes.append(outcome)
                key = _ballot(outcome, as_json) if outcome.ok else ""
                if key:
                    ballots.setdefault(key, []).append(position[done.route.id])
        outcomes.extend(await calls.cancel_rest())
    finally:
        await calls.cancel_rest()  # anything left only when we are being cancelled ourselves
    outcomes.sort(key=lambda outcome: position.get(outcome.route.id, len(voters)))
    return EnsembleResult(_elect(outcomes, ballots, voters), tuple(outcomes), _headers(outcomes, ballots))


def _elect(outcomes: list[Outcome], ballots: dict[str, list[int]], voters: tuple[RouteInfo, ...]) -> Outcome:
    if ballots:
        seats = max(ballots.values(), key=lambda seats: (len(seats), -min(seats)))
        first = voters[min(seats)].id
        return next(outcome for outcome in outcomes if outcome.ok and outcome.route.id == first)
    answered = [outcome for outcome in outcomes if outcome.ok]
    failures = [outcome for outcome in outcomes if not outcome.cancelled]
    return answered[0] if answered else (failures or outcomes)[-1]


def _ballot(outcome: Outcome, as_json: bool) -> str:
    """The answer as it is counted; "" for one that does not vote."""
    choice = first_choice(outcome.body)
    message = choice.get("message") if choice is not None else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        return ""
    if as_json:
        value = parse_json(content)
        if value is not NOT_JSON:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return " ".join(content.split()).casefold().removesuffix(".")


def _headers(outcomes: list[Outcome], ballots: dict[str, list[int]]) -> dict[str, str]:
    ranked = sorted(ballots.items(), key=lambda item: (-len(item[1]), min(item[1])))
    entries: list[str] = []
    for index, (key, seats) in enumerate(ranked):
        entry = f"{_label(key)}={len(seats)}"
        # Room is kept for the "...=<count>" entry that sums the rest.
        if len(",".join((*entries, entry))) > VOTES_MAX_CHARS - 12:
            entries.append(f"...={sum(len(rest) for _, rest in ranked[index:])}")
            break
        entries.append(entry)
    failed = sum(1 for outcome in outcomes if not outcome.ok and not outcome.cancelled)
    cancelled = sum(1 for outcome in outcomes if outcome.cancelled)
    agree = len(ranked[0][1]) if ranked else 0
    summary = f"vote; {len(outcomes)} voters; {agree} agree; {failed} failed; {cancelled} cancelled"
    return {"x-portico-ensemble": summary, "x-portico-votes": ",".join(entries)}


def _label(key: str) -> str:
    """The answer itself when short and header-safe, else `#` and a hash of it."""
    if len(key) <= _LABEL_MAX_CHARS and key == key.strip() and all(" " <= c <= "~" and c not in ',;="#' for c in key):
        return key
    return "#" + hashlib.sha256(key.encode()).hexdigest()[:10]
