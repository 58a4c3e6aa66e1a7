"""Several fake OpenAI upstreams at once, each saying who it is, and a port where nothing answers.

A public model served by several deployments is tested against several
upstreams: a `FakeFleet` starts them, labelled `fake-1`, `fake-2`, ..., so that
an answer's content ("served by fake-2") and its `x-fake-upstream` header tell
which one served it, and `served_by(model)` tells which ones were tried, in order.

    with FakeFleet(3) as fleet:
        fleet[0].script(model, Fail(503))          # point deployment i's provider at fleet[i].base_url
        ...
        assert fleet.served_by(model) == ["fake-1", "fake-2"]

`refused_base_url()` is a base URL whose connections are refused at once: a
deployment whose provider is down.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Iterator
from types import TracebackType

from tests.fakes.openai_upstream import FakeUpstream, Received


class FakeFleet:
    """`size` fake OpenAI upstreams, each on its own port and thread; `fleet[i]` is the one labelled `fake-{i+1}`."""

    def __init__(self, size: int, prefix: str = "fake") -> None:
        self.upstreams = [FakeUpstream(label=f"{prefix}-{number}") for number in range(1, size + 1)]

    def start(self) -> None:
        try:
            for upstream in self.upstreams:
                upstream.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for upstream in self.upstreams:
            upstream.stop()

    def __enter__(self) -> FakeFleet:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def __getitem__(self, index: int) -> FakeUpstream:
        return self.upstreams[index]

    def __iter__(self) -> Iterator[FakeUpstream]:
        return iter(self.upstreams)

    def __len__(self) -> int:
        return len(self.upstreams)

    def reset(self) -> None:
        for upstream in self.upstreams:
            upstream.reset()

    def received(self, model: str | None = None) -> list[tuple[str, Received]]:
        """Every request the fleet received (for `model`), with the label of its upstream, in order of arrival."""
        requests = [(str(upstream.label), request) for upstream in self for request in upstream.received(model)]
        return sorted(requests, key=lambda pair: pair[1].at)

    def served_by(self, model: str | None = None) -> list[str]:
        """The labels of the upstreams that received the requests (for `model`), in order of arrival."""
        return [label for label, _ in self.received(model)]


class RefusedPort:
    """A loopback port held bound but never listening: every connection to it is refused with a RST,
    and no other server can take it while this is open."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> RefusedPort:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


@functools.cache
def _held_refused_port() -> RefusedPort:
    return RefusedPort()


def refused_port() -> int:
    """A port of 127.0.0.1 that refuses every connection, held for the life of the test process."""
    return _held_refused_port().port


def refused_base_url() -> str:
    """An OpenAI base URL on `refused_port()`: a provider that is down."""
    return f"http://127.0.0.1:{refused_port()}/v1"
