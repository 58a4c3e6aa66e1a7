"""Prometheus metrics: what one call adds, the tenant label's opt-in, who may scrape, and the run directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from django.test import RequestFactory, override_settings
from prometheus_client import CollectorRegistry
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from gateway.observability import rundir, views
from gateway.observability.access import DEFAULT_ALLOW, ScrapeAccess, networks
from gateway.observability.metrics import Metrics


def row(**changes: Any) -> dict[str, Any]:
    """A ledger row as billing.ledger.LedgerEntry.row() writes it."""
    values: dict[str, Any] = {
        "request_id": "req_1",
        "client_request_id": "",
        "tenant_id": 7,
        "key_prefix": "pk-abcdefgh",
        "model": "gpt-test",
        "provider": "openai-eu",
        "deployment": "openai-eu/gpt-4o",
        "attempts": 1,
        "operation": "chat",
        "streamed": False,
        "status": 200,
        "error_type": "",
        "prompt_tokens": 12,
        "completion_tokens": 30,
        "cost": "0.000450",
        "latency_ms": 420,
        "first_token_ms": None,
        "overhead_ms": 0,
        "queue_ms": None,
        "client_disconnected": False,
    }
    return values | changes


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def test_a_call_counts_its_answer_latency_tokens_cost_and_overhead(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry, tenant_labels=False)
    metrics.record_call(row(), "", 0.0004)
    metrics.record_call(row(streamed=True, first_token_ms=120, latency_ms=900), "", 0.0002)
    assert (
        value(
            registry,
            "portico_requests_total",
            model="gpt-test",
            provider="openai-eu",
            status_class="2xx",
            error_class="",
        )
        == 0
    )  # tallied, not yet added: the hand-off thread flushes once per pass
    metrics.flush()

    labels = {"model": "gpt-test", "provider": "openai-eu"}
    answers = {**labels, "status_class": "2xx", "error_class": ""}
    assert value(registry, "portico_requests_total", **answers) == 2
    assert value(registry, "portico_request_latency_seconds_count", **labels) == 2
    assert value(registry, "portico_request_latency_seconds_sum", **labels) == pytest.approx(1.32)
    assert value(registry, "portico_request_latency_seconds_bucket", **labels, le="0.5") == 1
    assert value(registry, "portico_time_to_first_token_seconds_count", **labels) == 1
    assert value(registry, "portico_prompt_tokens_total", **labels) == 24
    assert value(registry, "portico_completion_tokens_total", **labels) == 60
    assert value(registry, "portico_cost_usd_total", **labels) == pytest.approx(0.0009)
    assert value(registry, "portico_overhead_seconds_count") == 2
    assert value(registry, "portico_overhead_seconds_bucket", le="0.00025") == 1


def test_failures_are_counted_by_status_class_and_error_class(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry, tenant_labels=False)
    metrics.record_call(row(status=502, error_type="upstream_unavailable", completion_tokens=0, cost="0"), "", None)
    metrics.record_call(row(status=429, error_type="rate_limit_exceeded", prompt_tokens=0), "", None)
    metrics.record_answer(401, 0.0001)
    metrics.flush()

    base = {"model": "gpt-test", "provider": "openai-eu"}
    unavailable = "upstream_unavailable"
    assert value(registry, "portico_requests_total", **base, status_class="5xx", error_class=unavailable) == 1
    assert value(registry, "portico_requests_total", **base, status_class="4xx", error_class="rate_limit_exceeded") == 1
    assert value(registry, "portico_requests_total", model="", provider="", status_class="4xx", error_class="") == 1
    assert value(registry, "portico_requests_total", **base, status_class="2xx", error_class="") is None


def test_flushes_add_only_what_came_since_the_last_one(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry, tenant_labels=False)
    labels = {"model": "gpt-test", "provider": "openai-eu"}
    metrics.record_call(row(latency_ms=200), "", 0.0001)
    metrics.flush()
    metrics.flush()
    metrics.record_call(row(latency_ms=3000), "", 0.002)
    metrics.flush()

    assert value(registry, "portico_request_latency_seconds_count", **labels) == 2
    assert value(registry, "portico_request_latency_seconds_bucket", **labels, le="0.25") == 1
    assert value(registry, "portico_request_latency_seconds_bucket", **labels, le="5.0") == 2
    assert value(registry, "portico_request_latency_seconds_sum", **labels) == pytest.approx(3.2)
    assert value(registry, "portico_prompt_tokens_total", **labels) == 24
    assert value(registry, "portico_overhead_seconds_bucket", le="0.0001") == 1
    assert value(registry, "portico_overhead_seconds_bucket", le="0.0025") == 2


def test_limiter_refusals_are_counted_by_kind(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry, tenant_labels=False)
    for refused in ("requests", "tokens", "tokens", "budget", "concurrency"):
        metrics.record_refusal(refused, "")

    assert value(registry, "portico_limiter_refusals_total", kind="rpm") == 1
    assert value(registry, "portico_limiter_refusals_total", kind="tpm") == 2
    assert value(registry, "portico_limiter_refusals_total", kind="budget") == 1
    assert value(registry, "portico_limiter_refusals_total", kind="concurrency") == 1


def test_tenants_are_labels_only_when_asked_for(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry, tenant_labels=True)
    metrics.record_call(row(), "acme", None)
    metrics.record_refusal("budget", "acme")
    metrics.flush()
    plain = CollectorRegistry()
    plain_metrics = Metrics(plain, tenant_labels=False)
    plain_metrics.record_call(row(), "", None)
    plain_metrics.flush()

    labels = {"model": "gpt-test", "provider": "openai-eu"}
    assert value(registry, "portico_prompt_tokens_total", **labels, tenant="acme") == 12
    assert value(registry, "portico_limiter_refusals_total", kind="budget", tenant="acme") == 1
    assert value(plain, "portico_prompt_tokens_total", **labels) == 12
    assert value(plain, "portico_prompt_tokens_total", **labels, tenant="acme") is None


# --- who may scrape ---


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("10.1.2.3", True),
        ("172.20.0.9", True),
        ("192.168.1.10", True),
        ("fd12::1", True),
        ("::ffff:10.0.0.7", True),
        ("203.0.113.5", False),
        ("2001:db8::1", False),
        ("", False),
        ("not-an-address", False),
    ],
)
def test_the_default_networks_are_loopback_and_private_ones(address: str, allowed: bool) -> None:
    access = ScrapeAccess(allow=networks(DEFAULT_ALLOW))
    assert (access.check(address, "") == "ok") is allowed


def test_a_token_is_required_once_set_and_the_networks_still_apply() -> None:
    access = ScrapeAccess(allow=networks(["127.0.0.1/32"]), token="s3cret-token")

    assert access.check("127.0.0.1", "") == "token"
    assert access.check("127.0.0.1", "Bearer wrong") == "token"
    assert access.check("127.0.0.1", "Basic s3cret-token") == "token"
    assert access.check("127.0.0.1", "Bearer s3cret-token") == "ok"
    assert access.check("198.51.100.1", "Bearer s3cret-token") == "network"


def test_a_bad_network_is_named() -> None:
    with pytest.raises(ValueError, match="10.0.0.0/33"):
        networks(["10.0.0.0/33"])


@pytest.fixture
def fresh_access() -> Iterator[None]:
    views.scrape_access.cache_clear()
    yield
    views.scrape_access.cache_clear()


def scrape(address: str, **headers: str) -> Any:
    return views.metrics(RequestFactory().get("/metrics", REMOTE_ADDR=address, **headers))


@pytest.mark.usefixtures("fresh_access")
def test_the_view_answers_loopback_with_the_exposition_format() -> None:
    response = scrape("127.0.0.1")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert b"# TYPE portico_requests_total counter" in response.content
    assert b"portico_snapshot_age_seconds" in response.content


@pytest.mark.usefixtures("fresh_access")
def test_the_view_refuses_an_address_outside_the_networks_with_a_json_403() -> None:
    response = scrape("203.0.113.5")

    assert response.status_code == 403
    assert orjson.loads(response.content)["error"]["code"] == "metrics_forbidden"
    assert b"portico_" not in response.content


@pytest.mark.usefixtures("fresh_access")
@override_settings(PORTICO_METRICS_TOKEN="scrape-me", PORTICO_METRICS_ALLOW=["0.0.0.0/0", "::/0"])
def test_the_view_asks_for_the_token_once_one_is_set() -> None:
    refused = scrape("203.0.113.5")
    wrong = scrape("203.0.113.5", HTTP_AUTHORIZATION="Bearer nope")
    served = scrape("203.0.113.5", HTTP_AUTHORIZATION="Bearer scrape-me")

    assert refused.status_code == wrong.status_code == 401
    assert refused["WWW-Authenticate"] == "Bearer"
    assert orjson.loads(refused.content)["error"]["code"] == "invalid_token"
    assert served.status_code == 200


@override_settings(PORTICO_METRICS=False)
def test_metrics_can_be_turned_off() -> None:
    assert scrape("127.0.0.1").status_code == 404


# --- the per-run directory of `portico serve` ---


def test_a_chosen_directory_is_wiped_and_named_for_the_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(rundir.ENV, "")  # recorded, so the run's value is undone after the test
    chosen = tmp_path / "metrics"
    chosen.mkdir()
    (chosen / "counter_4242.db").write_bytes(b"an earlier run's counts")

    with rundir.metrics_run(str(chosen)) as directory:
        assert directory == chosen
        assert list(chosen.iterdir()) == []
        assert os.environ[rundir.ENV] == str(chosen)
    assert chosen.is_dir()  # the operator's directory stays, for a look after the run


def test_without_a_choice_each_run_gets_a_new_directory_removed_at_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(rundir.ENV, "")  # recorded, so the run's value is undone after the test
    with rundir.metrics_run() as first, rundir.metrics_run() as second:
        assert first != second
        assert first.is_dir()
    assert not first.exists()
    assert not second.exists()


def test_a_scrape_of_the_workers_skips_a_file_a_worker_has_created_but_not_sized(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker creates its file for a kind of metric empty, then sizes it: a scrape in between must still answer.
    written = MmapedDict(str(tmp_path / "counter_101.db"))
    key = mmap_key("portico_requests", "portico_requests_total", ["model"], ["gpt-test"], "Answers.")
    written.write_value(key, 3.0, 0.0)
    written.close()
    (tmp_path / "counter_102.db").write_bytes(b"")
    monkeypatch.setenv(rundir.ENV, str(tmp_path))

    answer = scrape("127.0.0.1")

    assert answer.status_code == 200
    assert 'portico_requests_total{model="gpt-test"} 3.0' in answer.content.decode()


def test_the_limiters_spares_are_counted_by_what_their_totals_grew(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry, tenant_labels=False)
    first = SimpleNamespace(taken=3, given_back=1)

    metrics.count_spares(first)
    first.taken = 5
    metrics.count_spares(first)
    # A new limiter (Portico started its metering again) counts from nothing, past the old totals before a look.
    metrics.count_spares(SimpleNamespace(taken=9, given_back=1))

    assert value(registry, "portico_limiter_spares_taken_total") == 14
    assert value(registry, "portico_limiter_spares_given_back_total") == 2


def test_each_sample_reads_the_processs_limiter_for_its_spares(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.accounting import accounts
    from gateway.observability import gauges

    metrics = Metrics(registry, tenant_labels=False)
    spares = SimpleNamespace(taken=4, given_back=1)
    monkeypatch.setattr(accounts, "limiter", SimpleNamespace(spares=spares))

    gauges.sample(metrics)
    spares.taken = 6
    gauges.sample(metrics)

    assert value(registry, "portico_limiter_spares_taken_total") == 6
    assert value(registry, "portico_limiter_spares_given_back_total") == 1
