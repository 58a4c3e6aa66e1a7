"""Ensembles: one call answered by several upstream calls (cascade, hedge, vote).

The routing loop calls these with the deployments left after filtering, in its try
order, and an `attempt` that makes one upstream call on one deployment and returns
the whole answer (or, for `hedge_stream`, an `open_stream` that returns once a
stream's first event is in). This package only orchestrates (which calls, when,
which answer wins), so it is the same whatever an attempt does.

| mode      | upstream calls                                     | the answer                                 |
|-----------|----------------------------------------------------|--------------------------------------------|
| `cascade` | one at a time in the given (cheapest first) order, | the first acceptable one; else the last    |
|           | until an answer is acceptable                      | answer that came back, else the last error |
| `hedge`   | the first; also the second once the first has not  | whichever answers first; the other is      |
|           | answered within its p95 time to first byte, or has | cancelled                                  |
|           | failed                                             |                                            |
| `vote`    | n at once; the rest cancelled once a strict        | the one most give (ties: deployment order) |
|           | majority agree                                     |                                            |

No upstream failure is raised out of here: every call made (answered, failed, or
cancelled because another answered first: status 499, usage unknown) comes back in
`EnsembleResult.outcomes` for the loop to bill and record, and `chosen` is what the
client gets, a failure when nothing answered. Every task started here is awaited,
or cancelled and then awaited, before a function returns. When the caller itself is
cancelled (client gone, deadline), the calls in flight are cancelled and awaited and
the CancelledError propagates: an attempt that must bill a call cut short does it
itself, as it sees the CancelledError first.

Headers for the answer: `x-portico-ensemble` (mode and what happened, e.g.
`cascade; answered at step 2; escalated: length`) and, for a vote,
`x-portico-votes` (`positive=2,negative=1`; see `vote`).
"""

from gateway.ensembles.answers import REFUSAL_MAX_CHARS, REFUSAL_OPENINGS, answer_check, escalation
from gateway.ensembles.calls import CANCELLED, Attempt, EnsembleResult, OpenStream, Outcome, Superseded
from gateway.ensembles.cascade import cascade
from gateway.ensembles.hedge import FirstByteTimes, HedgedStream, hedge, hedge_stream
from gateway.ensembles.vote import VOTES_MAX_CHARS, vote

__all__ = [
    "CANCELLED",
    "REFUSAL_MAX_CHARS",
    "REFUSAL_OPENINGS",
    "VOTES_MAX_CHARS",
    "Attempt",
    "EnsembleResult",
    "FirstByteTimes",
    "HedgedStream",
    "OpenStream",
    "Outcome",
    "Superseded",
    "answer_check",
    "cascade",
    "escalation",
    "hedge",
    "hedge_stream",
    "vote",
]
