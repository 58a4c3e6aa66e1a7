"""What the limiter keeps per key (packed commands, ticket parts) is what it would build call by call."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from billing.limits import Ask, Budget, RedisLimiter, Window, verdicts
from billing.limits import redis as limiter_module
from billing.limits.resp import pack
from billing.limits.scripts import ACQUIRE, SETTLE
from billing.limits.verdicts import ticket_for
from billing.tests.test_limits import FakeClock


def window(scope: str, **limits: int) -> Window:
    return Window(scope=scope, label=scope, **limits)


BUDGETS = (
    Budget("key:12", "this API key", "2026-12", 5 * 10**9, 12_345, 2_764_800, 1_798_761_600.0),
    Budget("tenant:3", "this organization", "all", 10**12, 0, 0),
)
ASKS = {
    "a key alone": Ask("r", (window("key:12", rpm=5, tpm=100, concurrency=2),), (), 10, 0),
    "a key and its tenant, with budgets": Ask(
        "r",
        (window("key:12", rpm=5, concurrency=1), window("tenant:3:model:gpt-4o", tpm=100), window("tenant:3", rpm=50)),
        BUDGETS,
        40,
        900,
        shard="tenant:3",
    ),
    "budgets alone": Ask("r", (), BUDGETS, 0, 77),
    "a batch line's share": Ask("r", (window("key:12", rpm=50, tpm=1000, concurrency=4),), (), 300, 0, share=0.25),
}


def whole(limiter: RedisLimiter, ask: Ask) -> bytes:
    keys, args = limiter._acquire_call(ask)
    return pack(("EVALSHA", ACQUIRE.sha, len(keys), *keys, *args))


def whole_settle(limiter: RedisLimiter, ask: Ask, tokens: int, cost: int) -> bytes:
    keys, args = limiter._settle_call(ticket_for(ask, local=False), tokens, cost)
    return pack(("EVALSHA", SETTLE.sha, len(keys), *keys, *args))


@pytest.mark.parametrize("clock", [None, FakeClock()], ids=["Redis's clock", "a given clock"])
@pytest.mark.parametrize("name", ASKS)
def test_calls_of_one_key_are_packed_as_they_would_be_whole(name: str, clock: FakeClock | None) -> None:
    limiter = RedisLimiter("redis://127.0.0.1:1/0", prefix="portico", clock=clock)
    assert limiter._shaped
    first = ASKS[name]
    for number, (tokens, cost) in enumerate([(10, 0), (0, 0), (4096, 10**9), (1, 3), (77, 5)]):
        # The same windows and budgets, as the metering hands them over call after call.
        ask = replace(first, request_id=uuid.uuid4().hex, tokens=tokens, cost=cost)
        assert pack(limiter._acquire_command(ask)) == whole(limiter, ask)
        settled_tokens, settled_cost = tokens * number, cost // (number + 1)
        command = limiter._settle_command(ticket_for(ask, local=False), settled_tokens, settled_cost)
        assert pack(command) == whole_settle(limiter, ask, settled_tokens, settled_cost)


def test_new_limits_make_a_new_shape() -> None:
    limiter = RedisLimiter("redis://127.0.0.1:1/0", prefix="portico")
    ask = ASKS["a key and its tenant, with budgets"]
    limiter._acquire_command(ask)
    # A new snapshot: new tuples, one limit changed, one budget's spend moved on.
    changed = replace(
        ask,
        windows=(replace(ask.windows[0], rpm=6), *ask.windows[1:]),
        budgets=(replace(BUDGETS[0], spent=99_999), BUDGETS[1]),
    )
    assert pack(limiter._acquire_command(changed)) == whole(limiter, changed)
    assert b"$5\r\n99999\r\n" in pack(limiter._acquire_command(changed))
    fewer = replace(ask, windows=ask.windows[:1])
    command = limiter._settle_command(ticket_for(fewer, local=False), 3, 4)
    assert pack(command) == whole_settle(limiter, fewer, 3, 4)


def test_the_shapes_kept_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limiter_module, "SHAPES_MAX", 20)
    limiter = RedisLimiter("redis://127.0.0.1:1/0", prefix="portico")
    for number in range(300):
        ask = Ask("r", (window(f"key:{number}", rpm=5, tpm=9, concurrency=1),), (), 1, 0)
        assert pack(limiter._acquire_command(ask)) == whole(limiter, ask)
        assert pack(limiter._settle_command(ticket_for(ask, local=False), 2, 0)) == whole_settle(limiter, ask, 2, 0)
    assert len(limiter._acquire_shapes) <= 20
    assert len(limiter._settle_shapes) <= 20
    assert limiter._acquire_shapes[(id(ask.windows), id(ask.budgets))][0] is ask.windows  # the oldest go first


def test_a_cluster_connection_gets_whole_commands() -> None:
    limiter = RedisLimiter("redis://127.0.0.1:1/0", prefix="portico", cluster=True)
    ask = replace(ASKS["a key alone"], shard="tenant:3")
    command = limiter._acquire_command(ask)
    keys, args = limiter._acquire_call(ask)
    assert command == ("EVALSHA", ACQUIRE.sha, len(keys), *keys, *args)  # redis-py sends plain arguments only


def test_a_ticket_keeps_what_its_windows_and_budgets_say(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verdicts, "_PARTS_MAX", 10)
    monkeypatch.setattr(verdicts, "_PARTS", {})
    asks = [*ASKS.values()]
    asks += [
        replace(ask, windows=(*ask.windows, window(f"extra:{n}", tpm=n, concurrency=1))) for n, ask in enumerate(asks)
    ]
    for _ in range(3):
        for ask in asks * 5:
            ticket = ticket_for(ask, local=False)
            assert ticket.token_limits == tuple((w.scope, w.tpm) for w in ask.windows if w.tpm is not None)
            assert ticket.concurrency_scopes == tuple(w.scope for w in ask.windows if w.concurrency is not None)
            assert ticket.budget_periods == tuple((b.scope, b.period) for b in ask.budgets)
            assert (ticket.request_id, ticket.tokens, ticket.cost, ticket.shard) == (
                ask.request_id,
                ask.tokens,
                ask.cost,
                ask.shard,
            )
    assert len(verdicts._PARTS) <= 10
