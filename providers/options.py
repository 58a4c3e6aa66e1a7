"""The routing options a public model may choose: strategies, retry classes, ensembles.

Plain constants with no Django import, so the models, the admin, the management
API and the hot path all read the same names.
"""

from __future__ import annotations

STRATEGIES = ("priority", "weighted", "least-busy", "latency", "cost")

# What may send a call on to the next deployment: a refused or reset connection, a timeout, an
# upstream 5xx or 429, a stalled stream, a prompt too long for the window, a content filter.
RETRY_CLASSES = ("connect", "timeout", "5xx", "429", "stall", "context_length", "content_filter")
DEFAULT_RETRY_ON = frozenset({"connect", "timeout", "5xx", "429", "stall"})

ENSEMBLES = ("cascade", "hedge", "vote")


def default_retry_on() -> list[str]:
    """The stored form of DEFAULT_RETRY_ON (a JSON list, in RETRY_CLASSES' order)."""
    return [name for name in RETRY_CLASSES if name in DEFAULT_RETRY_ON]
