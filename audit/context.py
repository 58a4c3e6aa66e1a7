"""Who is changing things, and from where: the audit scope of the current request or command.

The admin, the management API and the portal open a scope per request (audit.middleware), the
`portico` command line one per command (`cli_scope`). Changes made outside any scope (background
jobs, tests) are not recorded. The scope is a context variable, so it follows a request from the
ASGI event loop into the thread its synchronous view runs in.

The actor is resolved when the first change is written, not when the scope opens: the management
API authenticates its token inside the view, after every middleware has run.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property

from audit.kinds import ActorKind, AuditOrigin


@dataclass(frozen=True)
class Actor:
    label: str
    kind: str
    user_id: int | None = None


class AuditScope:
    def __init__(self, *, origin: str, remote_addr: str | None, actor: Callable[[], Actor]) -> None:
        self.origin = origin
        self.remote_addr = remote_addr
        self._resolve = actor

    @cached_property
    def actor(self) -> Actor:
        return self._resolve()


_current: ContextVar[AuditScope | None] = ContextVar("portico_audit_scope", default=None)


def current_scope() -> AuditScope | None:
    return _current.get()


@contextmanager
def audit_scope(scope: AuditScope) -> Iterator[AuditScope]:
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)


def cli_actor() -> Actor:
    try:
        name = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry, as in some containers
        name = f"uid {os.getuid()}"
    return Actor(label=f"cli:{name}", kind=ActorKind.CLI)


@contextmanager
def cli_scope() -> Iterator[AuditScope]:
    """The scope of one `portico <command>`: every change it makes is recorded as the operating system user's."""
    with audit_scope(AuditScope(origin=AuditOrigin.CLI, remote_addr=None, actor=cli_actor)) as scope:
        yield scope
