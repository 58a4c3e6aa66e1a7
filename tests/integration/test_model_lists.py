"""Model-list sources read from a real loopback server: what each refresh makes of the registry, and records."""

from __future__ import annotations

import io
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from billing.models import DeploymentPrice, Price
from providers.credentials import decrypt_credential
from providers.model_lists.services import (
    SETTINGS_SOURCE,
    model_list_source_create,
    model_list_source_refresh,
    model_list_source_update,
    model_list_sources_due,
)
from providers.models import ModelListRefresh, ModelListSource, ModelRoute, Provider, PublicModel
from providers.tests.factories import make_provider, make_route
from tests.fakes.model_list_server import FakeModelList
from tests.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

LIST_CREDENTIAL = "sk-list-0123456789abcdef"


def entry(model: str, handle: str, prompt: float = 0.003, completion: float = 0.015, family: Any = None) -> dict:
    return {
        "model_version": model,
        "model_family": family,
        "handle": handle,
        "prompt_price_1k": prompt,
        "completion_price_1k": completion,
    }


CLAUDE = entry("claude-3-7-sonnet-20250219", "/anthropic/v1/messages", family="claude-3")
GPT = entry("gpt-4o-2024-08-06", "/openai/v1/chat/completions", 0.0025, 0.01, family="gpt-4o")
LLAMA = entry("llama-v3p1-70b", "/fireworks/inference/v1/chat/completions", 0.0009, 0.0009)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeModelList]:
    fake = FakeModelList(list_credential=LIST_CREDENTIAL)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def source(server: FakeModelList) -> ModelListSource:
    return model_list_source_create(name="corp", url=server.list_url, credential=LIST_CREDENTIAL)


def refresh(source: ModelListSource) -> ModelListRefresh:
    done = model_list_source_refresh(source=source)
    assert done is not None
    return done


def prices(model_id: str) -> list[tuple[Decimal, Decimal]]:
    rows = Price.objects.filter(route__public_id=model_id).order_by("effective_from")
    return [(row.input_per_million, row.output_per_million) for row in rows]


def costs(model_id: str) -> list[tuple[Decimal, Decimal]]:
    rows = DeploymentPrice.objects.filter(deployment__model__public_id=model_id).order_by("effective_from")
    return [(row.input_per_million, row.output_per_million) for row in rows]


def test_a_refresh_makes_a_provider_per_base_path_and_kind_and_a_priced_model_per_entry(
    server: FakeModelList, source: ModelListSource
) -> None:
    server.serve([CLAUDE, GPT, LLAMA])

    done = refresh(source)

    assert (done.status, done.error, done.entry_errors) == ("ok", "", [])
    assert done.diff == {"added": [CLAUDE["model_version"], GPT["model_version"], LLAMA["model_version"]],
                         "changed": [], "disabled": [], "reenabled": []}  # fmt: skip
    made = {(p.kind, p.base_url) for p in Provider.objects.filter(list_source__source=source)}
    assert made == {
        ("anthropic", f"{server.origin}/anthropic/v1"),
        ("openai", f"{server.origin}/openai/v1"),
        ("openai", f"{server.origin}/fireworks/inference/v1"),
    }
    for provider in Provider.objects.filter(list_source__source=source):
        assert decrypt_credential(provider.credential_encrypted) == LIST_CREDENTIAL
    claude = PublicModel.objects.get(public_id=CLAUDE["model_version"])
    assert (claude.owned_by, claude.model_family, claude.active) == ("claude-3", "claude-3", True)
    llama = PublicModel.objects.get(public_id=LLAMA["model_version"])
    assert (llama.owned_by, llama.model_family) == ("fireworks", "")  # no family: the handle's first segment
    deployment = ModelRoute.objects.get(model=claude)
    assert (deployment.provider.kind, deployment.upstream_model) == ("anthropic", CLAUDE["model_version"])
    assert prices(CLAUDE["model_version"]) == [(Decimal("3"), Decimal("15"))]
    assert costs(CLAUDE["model_version"]) == [(Decimal("3"), Decimal("15"))]
    assert prices(GPT["model_version"]) == [(Decimal("2.5"), Decimal("10"))]
    assert source.__class__.objects.get(pk=source.pk).last_status == "ok"
    assert server.list_requests()[-1]["authorization"] == f"Bearer {LIST_CREDENTIAL}"


def test_entries_that_change_go_and_come_back_are_followed_and_each_refresh_keeps_its_diff(
    server: FakeModelList, source: ModelListSource
) -> None:
    server.serve([CLAUDE, GPT])
    refresh(source)
    claude_id, gpt_id, llama_id = CLAUDE["model_version"], GPT["model_version"], LLAMA["model_version"]

    server.serve([{**CLAUDE, "prompt_price_1k": 0.004}, GPT, LLAMA])
    repriced = refresh(source)
    server.serve([{**CLAUDE, "prompt_price_1k": 0.004}, LLAMA])
    dropped = refresh(source)
    server.serve([{**CLAUDE, "prompt_price_1k": 0.004}, GPT, LLAMA])
    back = refresh(source)

    assert (repriced.diff["added"], repriced.diff["changed"]) == ([llama_id], [claude_id])
    assert prices(claude_id) == [(Decimal("3"), Decimal("15")), (Decimal("4"), Decimal("15"))]
    assert costs(claude_id) == [(Decimal("3"), Decimal("15")), (Decimal("4"), Decimal("15"))]
    assert dropped.diff == {"added": [], "changed": [], "disabled": [gpt_id], "reenabled": []}
    assert back.diff == {"added": [], "changed": [], "disabled": [], "reenabled": [gpt_id]}
    gpt = PublicModel.objects.get(public_id=gpt_id)
    assert gpt.active
    assert ModelRoute.objects.filter(model=gpt).count() == 1  # never deleted, nor made twice
    assert prices(gpt_id) == [(Decimal("2.5"), Decimal("10"))]
    history = list(source.refreshes.values_list("pk", flat=True))
    assert history == [back.pk, dropped.pk, repriced.pk, history[-1]]  # newest first, the first refresh last


def test_a_disabled_entry_leaves_its_model_inactive_in_the_database_not_deleted(
    server: FakeModelList, source: ModelListSource
) -> None:
    server.serve([CLAUDE, GPT])
    refresh(source)
    server.serve([GPT])

    refresh(source)

    claude = PublicModel.objects.get(public_id=CLAUDE["model_version"])
    assert claude.active is False
    assert ModelRoute.objects.filter(model=claude).exists()
    assert prices(CLAUDE["model_version"]) == [(Decimal("3"), Decimal("15"))]


def test_a_model_made_by_hand_is_never_touched_even_when_a_list_names_it(
    server: FakeModelList, source: ModelListSource
) -> None:
    own = make_route(provider=make_provider(kind="mock", name="hand-made"), public_id=GPT["model_version"])
    server.serve([CLAUDE, GPT])

    done = refresh(source)
    server.serve([CLAUDE])
    refresh(source)

    assert done.status == "partial"
    assert done.diff["added"] == [CLAUDE["model_version"]]
    assert done.entry_errors == [
        {
            "entry": 2,
            "model": GPT["model_version"],
            "error": "a public model of this id exists and is not managed by this source: left as it is",
        }
    ]
    model = PublicModel.objects.get(public_id=GPT["model_version"])
    assert (model.active, model.owned_by, model.model_family) == (True, "portico", "")
    assert list(ModelRoute.objects.filter(model=model)) == [own]
    assert prices(GPT["model_version"]) == []


def test_bad_entries_are_recorded_and_the_others_still_apply(server: FakeModelList, source: ModelListSource) -> None:
    missing = dict(GPT)
    del missing["completion_price_1k"]
    server.serve([missing, {**LLAMA, "prompt_price_1k": -1}, entry("x-1", "/custom/generate"), CLAUDE])

    done = refresh(source)

    assert done.status == "partial"
    assert done.diff["added"] == [CLAUDE["model_version"]]
    assert [(error["entry"], error["model"]) for error in done.entry_errors] == [
        (1, GPT["model_version"]),
        (2, LLAMA["model_version"]),
        (3, "x-1"),
    ]
    assert "completion_price_1k must be a number" in done.entry_errors[0]["error"]
    assert "must not be negative" in done.entry_errors[1]["error"]
    assert "no rule of this source" in done.entry_errors[2]["error"]
    assert not PublicModel.objects.filter(public_id__in=[GPT["model_version"], LLAMA["model_version"]]).exists()


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ((500, b'{"error": "down"}', False), "the list answered HTTP 500, not 200"),
        ((200, b"[{not json", False), "the list is not valid JSON"),
        ((200, b'{"models": []}', False), "the list is a JSON dict, not an array"),
        ((200, b"[" + b" " * 4096 + b"]", False), "the answer is over the bound of 2048 bytes (it declares 4098)"),
        ((200, b"[" + b" " * 4096 + b"]", True), "the answer is over the bound of 2048 bytes"),
    ],
)
@override_settings(PORTICO_MODEL_LIST_MAX_BYTES=2048)
def test_a_list_that_cannot_be_read_changes_nothing_and_says_why(
    server: FakeModelList, source: ModelListSource, answer: tuple[int, bytes, bool], error: str
) -> None:
    server.serve([CLAUDE, GPT])
    refresh(source)
    status, body, chunked = answer
    server.answer(status, body, chunked=chunked)

    done = refresh(source)

    assert (done.status, done.error) == ("failed", error)
    assert done.diff == {"added": [], "changed": [], "disabled": [], "reenabled": []}
    assert PublicModel.objects.filter(active=True).count() == 2
    source.refresh_from_db()
    assert (source.last_status, source.last_error) == ("failed", error)


@override_settings(PORTICO_MODEL_LIST_TIMEOUT=0.3)
def test_a_list_that_answers_too_slowly_is_given_up_after_the_timeout(
    server: FakeModelList, source: ModelListSource
) -> None:
    server.answer(200, b"[]", delay=3.0)

    done = refresh(source)

    assert (done.status, done.error) == ("failed", "timed out after 0.3 s")
    assert (done.finished_at - done.started_at).total_seconds() < 2.5


def test_an_unreachable_list_or_a_refused_credential_is_recorded(server: FakeModelList, db: None) -> None:
    unreachable = model_list_source_create(name="gone", url=f"http://127.0.0.1:{free_port()}/models.json")
    wrong = model_list_source_create(name="wrong-key", url=server.list_url, credential="sk-wrong")

    assert refresh(unreachable).error == "could not reach the list: ConnectError"
    assert refresh(wrong).error == "the list answered HTTP 401, not 200"


def test_providers_follow_the_sources_base_url_and_credential(server: FakeModelList, source: ModelListSource) -> None:
    server.serve([CLAUDE])
    refresh(source)
    server.list_credential = "sk-list-rotated"
    try:
        model_list_source_update(
            source=source, fields={"base_url": "http://llm.internal.test/gw/"}, credential="sk-list-rotated"
        )
        assert source.last_refreshed_at is None  # due at once
        refresh(source)
    finally:
        server.list_credential = LIST_CREDENTIAL

    provider = Provider.objects.get(list_source__source=source)
    assert provider.base_url == "http://llm.internal.test/gw/anthropic/v1"
    assert decrypt_credential(provider.credential_encrypted) == "sk-list-rotated"


def test_a_deployment_an_operator_deleted_is_made_again_with_its_cost(
    server: FakeModelList, source: ModelListSource
) -> None:
    server.serve([CLAUDE])
    refresh(source)
    ModelRoute.objects.filter(model__public_id=CLAUDE["model_version"]).delete()

    done = refresh(source)

    assert done.diff["changed"] == [CLAUDE["model_version"]]
    assert ModelRoute.objects.filter(model__public_id=CLAUDE["model_version"]).count() == 1
    assert costs(CLAUDE["model_version"]) == [(Decimal("3"), Decimal("15"))]


@override_settings(PORTICO_MODEL_LIST_HISTORY=2)
def test_the_history_keeps_the_newest_refreshes(server: FakeModelList, source: ModelListSource) -> None:
    server.serve([])
    done = [refresh(source) for _ in range(3)]

    assert list(source.refreshes.values_list("pk", flat=True)) == [done[2].pk, done[1].pk]


def test_the_settings_make_and_follow_the_env_source(server: FakeModelList, db: None) -> None:
    with override_settings(PORTICO_MODEL_LIST_URL=server.list_url, PORTICO_MODEL_LIST_CREDENTIAL=LIST_CREDENTIAL):
        due = model_list_sources_due()
        env = ModelListSource.objects.get(name=SETTINGS_SOURCE)
        assert due == [env.pk]
        assert (env.url, env.base_url, env.refresh_interval) == (server.list_url, "", 300)
        assert decrypt_credential(env.credential_encrypted) == LIST_CREDENTIAL
        server.serve([GPT])
        refresh(env)
        assert model_list_sources_due() == []  # refreshed just now
        assert model_list_sources_due(settings_source_due=True) == [env.pk]  # as when a worker starts
    with override_settings(
        PORTICO_MODEL_LIST_URL=server.list_url,
        PORTICO_MODEL_LIST_BASE_URL="http://other.test",
        PORTICO_MODEL_LIST_REFRESH_SECONDS=60,
        PORTICO_MODEL_LIST_CREDENTIAL="",
    ):
        model_list_sources_due()
    env.refresh_from_db()
    assert (env.base_url, env.refresh_interval, env.has_credential) == ("http://other.test", 60, False)
    assert ModelListSource.objects.count() == 1


def test_the_command_reads_every_enabled_list_now_and_fails_when_one_cannot_be_read(
    server: FakeModelList, source: ModelListSource
) -> None:
    server.serve([GPT])
    out, err = io.StringIO(), io.StringIO()
    call_command("model_lists_refresh", stdout=out, stderr=err)
    server.answer(500, b"")

    with pytest.raises(CommandError, match="1 of 1 lists could not be read"):
        call_command("model_lists_refresh", stdout=out, stderr=err)

    assert out.getvalue() == "corp: 1 added; 0 entries not applied\n"
    assert err.getvalue() == "corp: failed, the list answered HTTP 500, not 200\n"


def test_a_listed_model_an_operator_renamed_stays_the_sources_under_its_new_id(
    server: FakeModelList, source: ModelListSource
) -> None:
    server.serve([CLAUDE])
    refresh(source)
    PublicModel.objects.filter(public_id=CLAUDE["model_version"]).update(public_id="claude-latest")

    done = refresh(source)

    assert done.diff == {"added": [], "changed": [], "disabled": [], "reenabled": []}
    assert list(PublicModel.objects.values_list("public_id", "active")) == [("claude-latest", True)]


def test_a_model_whose_entry_turns_bad_keeps_its_last_good_state(
    server: FakeModelList, source: ModelListSource
) -> None:
    server.serve([CLAUDE, GPT])
    refresh(source)
    server.serve([{**CLAUDE, "prompt_price_1k": -1}, GPT])

    done = refresh(source)

    assert done.status == "partial"
    assert done.diff == {"added": [], "changed": [], "disabled": [], "reenabled": []}
    assert PublicModel.objects.get(public_id=CLAUDE["model_version"]).active
    assert prices(CLAUDE["model_version"]) == [(Decimal("3"), Decimal("15"))]
