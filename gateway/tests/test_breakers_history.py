"""The history of breaker transitions: written in batches off the request path, dropped (not waited for) on a
database outage."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
from django.db import OperationalError

from gateway.breakers import CLOSED, OPEN, BreakerRules, LocalBreakers, Transition, TransitionLog
from gateway.models import BreakerTransition

AT = 1_790_000_000.5


def opening(route_id: int = 7) -> Transition:
    return Transition(route_id, "acme/gpt-4o", CLOSED, OPEN, "5 failures in a row: 502", AT)


@pytest.mark.django_db
def test_it_writes_what_has_gathered_in_one_batch() -> None:
    log = TransitionLog()
    log.add(opening(7))
    log.add(opening(8))
    assert BreakerTransition.objects.count() == 0, "nothing is written by add()"
    assert log.flush() == 2
    row = BreakerTransition.objects.get(route_id=7)
    assert (row.route_name, row.from_state, row.to_state) == ("acme/gpt-4o", CLOSED, OPEN)
    assert row.reason == "5 failures in a row: 502"
    assert row.at.timestamp() == AT
    assert row.at.tzinfo is not None
    assert row.process == log.process
    assert log.flush() == 0


def test_a_database_outage_drops_the_batch_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    written: list[Transition] = []
    failing = True

    def insert(transitions: Sequence[Transition], process: str) -> None:
        if failing:
            raise OperationalError("connection refused")
        written.extend(transitions)

    log = TransitionLog(insert=insert)
    log.add(opening())
    with caplog.at_level(logging.ERROR, logger="gateway.breakers.history"):
        assert log.flush() == 0
    assert "could not write 1 breaker transition(s)" in caplog.text
    failing = False
    log.add(opening(9))
    assert log.flush() == 1
    assert [change.route_id for change in written] == [9]


@pytest.mark.django_db(transaction=True)
def test_its_thread_writes_what_is_left_when_it_stops() -> None:
    log = TransitionLog(interval=60)
    log.start()
    log.add(opening())
    log.stop()
    assert BreakerTransition.objects.filter(route_id=7).count() == 1


@pytest.mark.django_db
def test_an_operator_reset_is_written_at_once() -> None:
    breakers = LocalBreakers(rules=BreakerRules(consecutive_failures=1), history=TransitionLog())
    breakers.record(7, "acme/gpt-4o", ok=False, reason="timeout")
    breakers.reset(7)
    assert list(BreakerTransition.objects.values_list("from_state", "to_state", "reason")) == [
        (OPEN, CLOSED, "reset by an operator")
    ], "the opening waits for the background flush; the reset does not"
