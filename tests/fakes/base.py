"""What every scripted fake upstream shares: a script per model, and the requests it received, under one lock.

A test scripts a model's behaviour (`script`) before it calls, then reads what the
upstream got (`received`). Each fake names its own behaviours and its own record of a
request; a record only needs the request's JSON `body`, since records are found by its model.
"""

from __future__ import annotations

import threading
from typing import Any, Generic, Protocol, TypeVar

from tests.fakes.loopback import LoopbackServer


class Recorded(Protocol):
    @property
    def body(self) -> dict[str, Any]: ...


B = TypeVar("B")
R = TypeVar("R", bound=Recorded)


class ScriptedServer(LoopbackServer, Generic[B, R]):
    """A loopback fake that answers each model as scripted and records every request it gets."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._scripts: dict[str, B] = {}
        self._received: list[R] = []

    def script(self, model: str, behaviour: B) -> None:
        with self._lock:
            self._scripts[model] = behaviour

    def received(self, model: str | None = None) -> list[R]:
        with self._lock:
            return [r for r in self._received if model is None or r.body.get("model") == model]
