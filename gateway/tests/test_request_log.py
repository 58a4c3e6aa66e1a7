"""The `portico.requests` line: one per request, written by the hand-off's drain, as text or JSON, never the key."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from gateway.observability import handoff, request_log
from gateway.observability.clock import RequestClock
from gateway.observability.handoff import HandOff
from gateway.observability.metrics import Metrics
from gateway.observability.request_log import HELD_LINES_MAX, BatchedStreamHandler, JsonFormatter, TextFormatter
from gateway.tests.test_metrics import row

KEY = "pk-abcdefgh" + "S3CRETPART" * 4  # what a client sends; only its prefix may be logged


def observed_clock(request_id: str, seconds: float) -> RequestClock:
    clock = RequestClock(0.0)
    grant = SimpleNamespace(tenant_slug="acme", prefix="pk-abcdefgh")
    clock.call = SimpleNamespace(request_id=request_id, grant=grant, queue_ms=None, queued_at=None)
    clock.seconds, clock.ms = seconds, round(seconds * 1000)
    return clock


def own_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The lines this test's drain wrote: the process-wide hand-off thread may drain other tests' calls meanwhile."""
    here = threading.get_ident()
    return [record for record in caplog.records if record.name == "portico.requests" and record.thread == here]


@pytest.fixture
def hand_off() -> HandOff:
    return HandOff(Metrics(CollectorRegistry(), tenant_labels=False), interval=60.0)


def test_each_call_is_one_line_with_its_figures(hand_off: HandOff, caplog: pytest.LogCaptureFixture) -> None:
    hand_off.call(row(request_id="req_a", overhead_ms=1), observed_clock("req_a", 0.0012))
    hand_off.call(row(request_id="req_b", status=502, error_type="upstream_unavailable"), None)

    with caplog.at_level(logging.INFO, logger="portico.requests"):
        assert hand_off.drain() == 2

    lines = own_lines(caplog)
    assert [line.request["request_id"] for line in lines] == ["req_a", "req_b"]  # type: ignore[attr-defined]
    first, second = (line.request for line in lines)  # type: ignore[attr-defined]
    assert first["tenant"] == "acme"
    assert first["key_prefix"] == "pk-abcdefgh"
    assert first["overhead_ms"] == 1
    assert first["overhead_s"] == pytest.approx(0.0012)
    assert (first["model"], first["deployment"], first["status"]) == ("gpt-test", "openai-eu/gpt-4o", 200)
    assert (first["prompt_tokens"], first["completion_tokens"], first["cost_usd"]) == (12, 30, "0.000450")
    assert second["tenant"] == "7"  # a call that was not the request's own: its tenant's id
    assert second["error_class"] == "upstream_unavailable"
    assert "request_id=req_a" in lines[0].getMessage()


def test_the_thread_s_drain_gives_the_interpreter_up_every_slice_and_a_scrape_s_does_not(
    hand_off: HandOff, monkeypatch: pytest.MonkeyPatch
) -> None:
    pauses: list[None] = []
    monkeypatch.setattr(handoff, "_pause", lambda: pauses.append(None))
    count = 3 * handoff.SLICE + 1

    for number in range(count):
        hand_off.answer(200, observed_clock(f"req_{number}", 0.001), "/v1/models")
    assert hand_off.drain(pausing=True) == count
    assert len(pauses) == 3
    for number in range(count):
        hand_off.answer(200, observed_clock(f"req_{number}", 0.001), "/v1/models")
    assert hand_off.drain() == count  # /metrics drains on a request's thread: nothing there to give way to
    assert len(pauses) == 3


def test_a_call_of_another_request_does_not_take_its_clock(hand_off: HandOff, caplog: pytest.LogCaptureFixture) -> None:
    hand_off.call(row(request_id="req_line"), observed_clock("req_request", 0.5))

    with caplog.at_level(logging.INFO, logger="portico.requests"):
        hand_off.drain()

    (line,) = [record.request for record in own_lines(caplog)]  # type: ignore[attr-defined]
    assert line["overhead_s"] is None
    assert line["tenant"] == "7"


def test_the_json_format_is_one_object_per_line_without_the_key(
    hand_off: HandOff, caplog: pytest.LogCaptureFixture
) -> None:
    hand_off.call(row(request_id="req_json", first_token_ms=80, streamed=True), observed_clock("req_json", 0.0004))
    with caplog.at_level(logging.INFO, logger="portico.requests"):
        hand_off.drain()
    (record,) = own_lines(caplog)

    text = JsonFormatter().format(record)

    assert "\n" not in text
    line = orjson.loads(text)
    assert line["logger"] == "portico.requests"
    assert line["message"] == "request"
    assert line["request_id"] == "req_json"
    assert line["first_token_ms"] == 80
    assert line["latency_ms"] == 420
    assert KEY not in text
    assert "S3CRET" not in text


def test_answers_without_a_call_are_logged_with_their_status(
    hand_off: HandOff, caplog: pytest.LogCaptureFixture
) -> None:
    clock = RequestClock(0.0)
    clock.seconds, clock.ms = 0.0001, 0
    hand_off.answer(401, clock, "/v1/chat/completions")

    with caplog.at_level(logging.INFO, logger="portico.requests"):
        hand_off.drain()

    (line,) = [record.request for record in own_lines(caplog)]  # type: ignore[attr-defined]
    assert line == {"path": "/v1/chat/completions", "status": 401, "overhead_ms": 0}


def test_other_records_keep_their_message_in_json() -> None:
    record = logging.LogRecord("portico.ledger", logging.WARNING, __file__, 1, "spool %s is full", ("x",), None)

    line = orjson.loads(JsonFormatter().format(record))

    assert line["message"] == "spool x is full"
    assert line["level"] == "WARNING"


def test_the_lines_can_be_turned_off(hand_off: HandOff, caplog: pytest.LogCaptureFixture) -> None:
    hand_off.call(row(), None)
    with caplog.at_level(logging.CRITICAL, logger="portico.requests"):
        hand_off.drain()

    assert own_lines(caplog) == []
    assert (
        hand_off.metrics.registry.get_sample_value(
            "portico_requests_total",
            {"model": "gpt-test", "provider": "openai-eu", "status_class": "2xx", "error_class": ""},
        )
        == 1
    )  # the metrics count it all the same


@pytest.fixture
def process_hand_off_paused() -> Iterator[None]:
    """Keeps the process-wide hand-off thread out of a drain: the end of its own drain writes what every batching
    handler holds, this test's lines included, and would split the writes the test counts."""
    with handoff.hand_off._lock:
        yield


class CountingStream:
    """Keeps the writes of the thread that made it: the process-wide hand-off thread writes other tests' lines."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.owner = threading.get_ident()

    def write(self, text: str) -> None:
        if threading.get_ident() == self.owner:
            self.writes.append(text)

    def flush(self) -> None:
        pass


@pytest.mark.usefixtures("process_hand_off_paused")
def test_a_drains_lines_go_to_the_console_in_one_write(hand_off: HandOff) -> None:
    stream = CountingStream()
    handler = BatchedStreamHandler(stream)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    request_logger = logging.getLogger("portico.requests")
    request_logger.addHandler(handler)
    try:
        for n in range(5):
            hand_off.call(row(request_id=f"req_{n}"), None)
        assert hand_off.drain() == 5
        assert len(stream.writes) == 1
        lines = stream.writes[0].splitlines()
        assert [line.split()[1] for line in lines] == [f"request_id=req_{n}" for n in range(5)]

        # Outside a drain the handler writes each line as it comes, as any StreamHandler does.
        logging.getLogger("portico.requests").warning("a line of its own")
        assert stream.writes[1:] == ["portico.requests a line of its own\n"]
    finally:
        request_logger.removeHandler(handler)


@pytest.mark.usefixtures("process_hand_off_paused")
def test_a_long_drain_writes_its_held_lines_every_few_hundred(hand_off: HandOff) -> None:
    stream = CountingStream()
    handler = BatchedStreamHandler(stream)  # type: ignore[arg-type]
    request_logger = logging.getLogger("portico.requests")
    request_logger.addHandler(handler)
    try:
        for n in range(HELD_LINES_MAX + 3):
            hand_off.call(row(request_id=f"req_{n}"), None)
        hand_off.drain()
        assert [text.count("\n") for text in stream.writes] == [HELD_LINES_MAX, 3]
    finally:
        request_logger.removeHandler(handler)


@pytest.mark.parametrize("datefmt", [None, "%H:%M:%S"], ids=["logging's default time", "a datefmt"])
def test_text_lines_read_as_logging_s_own_whatever_the_second(datefmt: str | None) -> None:
    fmt = "%(asctime)s %(levelname)s %(name)s %(message)s"
    ours, theirs = TextFormatter(fmt, datefmt), logging.Formatter(fmt, datefmt)
    # Several lines within one second, then the next second, a jump of a day, and back: the cached text must follow.
    for created in (1_765_000_000.001, 1_765_000_000.5, 1_765_000_000.999, 1_765_000_001.0, 1_765_086_400.25, 1.5):
        record = logging.LogRecord("portico.requests", logging.INFO, __file__, 0, "line %d", (7,), None)
        record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
        assert ours.format(record) == theirs.format(record)


# What LogRecord() sets from the clock: the rest must be what it would set.
TIMES = ("created", "msecs", "relativeCreated")


def test_a_drains_records_are_the_ones_logging_would_make(hand_off: HandOff, caplog: pytest.LogCaptureFixture) -> None:
    # A drain copies the fields a thread's records share from one made by logging itself; formatters and
    # filters read any of them (%(process)d, %(threadName)s, %(module)s), so each must be as logging sets it.
    hand_off.call(row(request_id="req_a"), None)
    thread = threading.current_thread()
    name, thread.name = thread.name, "observer-under-test"
    try:
        with caplog.at_level(logging.INFO, logger="portico.requests"):
            before = time.time()
            hand_off.drain()
            after = time.time()
        (line,) = own_lines(caplog)
        made = logging.getLogger("portico.requests").makeRecord(
            "portico.requests", logging.INFO, request_log.__file__, 0, "%s", (line.args[0],), None
        )
    finally:
        thread.name = name
    expected = {name: value for name, value in vars(made).items() if name not in TIMES}
    # Added by the handler's formatter, and by the drain: the request's fields.
    added = ("request", "message", "asctime")
    seen = {name: value for name, value in vars(line).items() if name not in (*TIMES, *added)}
    assert seen == expected
    assert seen["threadName"] == "observer-under-test"
    assert before <= line.created <= after
    assert line.msecs == int((line.created - int(line.created)) * 1000)
    assert line.relativeCreated == pytest.approx((line.created - logging._startTime) * 1000)  # type: ignore[attr-defined]
    assert line.getMessage().startswith("request_id=req_a ")


def test_a_record_factory_of_the_applications_own_makes_every_line(
    hand_off: HandOff, caplog: pytest.LogCaptureFixture
) -> None:
    class Tagged(logging.LogRecord):
        tag = "own"

    hand_off.call(row(request_id="req_a"), None)
    factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(Tagged)
    try:
        with caplog.at_level(logging.INFO, logger="portico.requests"):
            hand_off.drain()
    finally:
        logging.setLogRecordFactory(factory)
    (line,) = own_lines(caplog)
    assert isinstance(line, Tagged)


@contextmanager
def console_alone(formatter: logging.Formatter) -> Iterator[CountingStream]:
    """Logging as gateway/settings.py sets it up: one batched console handler on the root, the request lines
    at INFO; pytest's own capturing handlers are set aside meanwhile."""
    stream = CountingStream()
    handler = BatchedStreamHandler(stream)  # type: ignore[arg-type]
    handler.setFormatter(formatter)
    root, request_logger = logging.getLogger(), logging.getLogger("portico.requests")
    kept, level = root.handlers[:], request_logger.level
    root.handlers[:] = [handler]
    request_logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.handlers[:] = kept
        request_logger.setLevel(level)


FORMATTERS: dict[str, Callable[[], logging.Formatter]] = {
    "text": lambda: TextFormatter(request_log.TEXT_FORMAT),
    "json": JsonFormatter,
}


@pytest.mark.usefixtures("process_hand_off_paused")
@pytest.mark.parametrize("name", FORMATTERS)
def test_the_straight_way_writes_the_lines_logging_would(
    name: str, hand_off: HandOff, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both ways read the clock once per line: the same instant, within a second and in the next one.
    instants = iter([1_765_000_000.0005, 1_765_000_000.999, 1_765_000_001.25] * 2)
    monkeypatch.setattr(request_log, "time", SimpleNamespace(time=lambda: next(instants), strftime=time.strftime))
    calls = [
        (row(request_id="req_a", overhead_ms=1), observed_clock("req_a", 0.0012)),
        (row(request_id="req_b", status=502, error_type="upstream_unavailable", streamed=True), None),
    ]
    written = []
    for straight in (True, False):
        with console_alone(FORMATTERS[name]()) as stream:
            assert request_log._straight_way() is not None
            if not straight:
                monkeypatch.setattr(request_log, "_straight_way", lambda: None)
            for line_row, clock in calls:
                hand_off.call(line_row, clock)
            clock = RequestClock(0.0)
            clock.seconds, clock.ms = 0.0001, 0
            hand_off.answer(401, clock, "/v1/models")
            assert hand_off.drain() == 3
            written.append(stream.writes)
    straight_lines, logging_lines = written
    assert len(straight_lines) == 1  # one write for the drain, either way
    assert straight_lines == logging_lines
    lines = straight_lines[0].splitlines()
    assert len(lines) == 3
    if name == "text":
        assert lines[0].startswith(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1_765_000_000)) + ",000 INFO ")
        assert lines[2].endswith("INFO portico.requests path=/v1/models status=401 overhead_ms=0")
    else:
        assert [orjson.loads(line)["time"] for line in lines] == [
            "2025-12-06T05:46:40.000+00:00",
            "2025-12-06T05:46:40.999+00:00",
            "2025-12-06T05:46:41.250+00:00",
        ]


def _filtered(handler: logging.Handler) -> None:
    handler.addFilter(lambda record: True)


def _second_handler(handler: logging.Handler) -> None:
    logging.getLogger("portico.requests").addHandler(logging.NullHandler())


def _own_format(handler: logging.Handler) -> None:
    handler.setFormatter(TextFormatter("%(levelname)s %(message)s"))


def _own_datefmt(handler: logging.Handler) -> None:
    handler.setFormatter(TextFormatter(request_log.TEXT_FORMAT, "%H:%M:%S"))


def _logger_filtered(handler: logging.Handler) -> None:
    logging.getLogger("portico.requests").addFilter(lambda record: True)


CHANGES = [_filtered, _second_handler, _own_format, _own_datefmt, _logger_filtered]


@pytest.mark.parametrize("change", CHANGES, ids=lambda change: change.__name__)
def test_any_other_logging_setup_takes_logging_s_way(change: Any) -> None:
    request_logger = logging.getLogger("portico.requests")
    with console_alone(TextFormatter(request_log.TEXT_FORMAT)):
        (handler,) = logging.getLogger().handlers
        handlers, filters = request_logger.handlers[:], request_logger.filters[:]
        try:
            assert request_log._straight_way() is not None
            change(handler)
            assert request_log._straight_way() is None
        finally:
            request_logger.handlers[:], request_logger.filters[:] = handlers, filters


def test_a_record_factory_of_the_applications_own_closes_the_straight_way() -> None:
    factory = logging.getLogRecordFactory()
    with console_alone(JsonFormatter()):
        logging.setLogRecordFactory(lambda *args, **kwargs: logging.LogRecord(*args, **kwargs))
        try:
            assert request_log._straight_way() is None
        finally:
            logging.setLogRecordFactory(factory)
