"""Cascade: the cheapest deployment first, a dearer one only when the answer is not good enough."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gateway.ensembles.answers import answer_check, escalation
from gateway.ensembles.calls import Attempt, EnsembleResult, Outcome, call_once

if TYPE_CHECKING:
    from providers.facade import RouteInfo


async def cascade(routes: Sequence[RouteInfo], attempt: Attempt, request_body: dict[str, Any]) -> EnsembleResult:
    """One deployment at a time, in the order given (the loop sorts by cost), until an answer is acceptable.

    What makes an answer unacceptable is in `gateway.ensembles.answers`. When none
    is, the client gets the last answer that came back (a dearer model's truncated
    answer beats a later 500), or the last failure when none came back.
    """
    if not routes:
        raise ValueError("an ensemble needs at least one deployment")
    check = answer_check(request_body)
    outcomes: list[Outcome] = []
    reasons: list[str] = []
    for step, route in enumerate(routes, 1):
        outcome = await call_once(attempt, route)
        outcomes.append(outcome)
        reason = escalation(outcome, check)
        if not reason:
            return EnsembleResult(outcome, tuple(outcomes), {"x-portico-ensemble": _header(step, reasons)})
        reasons.append(reason)
    answered = [step for step, outcome in enumerate(outcomes, 1) if outcome.ok] or [len(outcomes)]
    chosen = outcomes[answered[-1] - 1]
    header = _header(answered[-1], reasons) + "; none acceptable"
    return EnsembleResult(chosen, tuple(outcomes), {"x-portico-ensemble": header})


def _header(step: int, reasons: list[str]) -> str:
    escalated = f"; escalated: {' '.join(reasons)}" if reasons else ""
    return f"cascade; answered at step {step}{escalated}"
