"""The breaker panel in the console: each deployment's breaker, its reset, and the read-only history.

The breakers are the real ones (`LocalBreakers`, and `RedisBreakers` on the
test Redis under a prefix of their own), put in the place of the process's
breakers; their state is driven by recording failures, and their clock is a
fake one, so a cooldown passes without waiting.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from billing.admin import CostedModelRouteAdmin, PricedPublicModelAdmin
from billing.tests.factories import make_user
from gateway.admin import UNREACHABLE, show_breakers_on_deployments, when
from gateway.breakers import CLOSED, OPEN, LocalBreakers, RedisBreakers, TransitionLog
from gateway.models import BreakerTransition
from gateway.tests.test_breakers import REDIS_URL, RULES, FakeClock, drop_keys, new_prefix
from providers.models import ModelRoute, PublicModel
from providers.tests.factories import make_provider, make_route
from tests.security.test_admin_hardening import _inline_code

pytestmark = pytest.mark.django_db

PANEL = "admin:gateway_breakertransition_panel"
RESET = "admin:gateway_breakertransition_reset"
HISTORY = "admin:gateway_breakertransition_changelist"
WHY = "upstream_unavailable"

Breakers = LocalBreakers | RedisBreakers


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["local", "redis"])
def breakers(request: pytest.FixtureRequest, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Breakers]:
    """The process's breakers, as the console reads them."""
    prefix = new_prefix()
    made: Breakers
    if request.param == "redis":
        made = RedisBreakers(REDIS_URL, prefix=prefix, rules=RULES, clock=clock, history=TransitionLog())
    else:
        made = LocalBreakers(rules=RULES, clock=clock, history=TransitionLog())
    monkeypatch.setattr("gateway.admin.breakers_for_settings", lambda: made)
    yield made
    asyncio.run(drop_keys(prefix))


@pytest.fixture
def deployments() -> list[ModelRoute]:
    """Three deployments of one public model, on three providers."""
    return [
        make_route(provider=make_provider(name=name), public_id="gpt-4o", upstream_model=f"gpt-4o-{name}", priority=i)
        for i, name in enumerate(["acme", "globex", "initech"])
    ]


def drive(
    breakers: Breakers, clock: FakeClock, *, half_open: Sequence[ModelRoute] = (), open: Sequence[ModelRoute] = ()
) -> None:
    """Fail deployments until their breakers open; let the cooldown of `half_open` pass and probe them."""

    def fail(routes: Sequence[ModelRoute]) -> None:
        for route in routes:
            for _ in range(RULES.consecutive_failures):
                breakers.record(route.pk, route.name, ok=False, reason=WHY)

    async def run() -> None:
        fail(half_open)
        await breakers.flush()
        if half_open:
            clock.advance(RULES.cooldown)
            for route in half_open:
                assert await breakers.acquire_probe(route.pk)
        fail(open)
        await breakers.flush()
        await breakers.stop()  # closes its asyncio client with this loop; state() and reset() use their own

    asyncio.run(run())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _staff(*codenames: str) -> Client:
    user = make_user(staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


# --- the panel ----------------------------------------------------------------------------------------------


def test_the_panel_shows_each_deployments_breaker_since_when_and_its_last_errors(
    admin_client: Client, breakers: Breakers, clock: FakeClock, deployments: list[ModelRoute]
) -> None:
    healthy, probing, failing = deployments
    drive(breakers, clock, half_open=[probing], open=[failing])

    response = admin_client.get(reverse(PANEL))

    assert response.status_code == 200
    rows = {row.route.pk: row for row in response.context["rows"]}
    assert [rows[route.pk].label for route in deployments] == ["closed", "half-open", "open"]
    assert rows[healthy.pk].since == ""
    assert rows[failing.pk].since == when(datetime.fromtimestamp(clock.now, UTC))
    assert rows[failing.pk].until == when(datetime.fromtimestamp(clock.now + RULES.cooldown, UTC))
    assert rows[failing.pk].state.reason == f"3 failures in a row: {WHY}"
    assert [reason for _, reason in rows[failing.pk].errors] == [WHY] * 3
    html = response.content.decode()
    assert html.count('value="Reset"') == 2, "the half-open and the open breaker"
    assert f"3 failures in a row: {WHY}" in html
    assert f'href="{reverse(HISTORY)}?route_id={failing.pk}"' in html


def test_the_panel_lists_only_the_breakers_in_the_state_asked_for(
    admin_client: Client, breakers: Breakers, clock: FakeClock, deployments: list[ModelRoute]
) -> None:
    drive(breakers, clock, open=[deployments[1]])

    response = admin_client.get(reverse(PANEL), {"state": OPEN})

    assert [row.route.pk for row in response.context["rows"]] == [deployments[1].pk]
    assert "open (1)" in response.content.decode()
    assert "all (3)" in response.content.decode()


def test_a_reset_closes_the_breaker_and_writes_it_to_the_history(
    admin_client: Client, breakers: Breakers, clock: FakeClock, deployments: list[ModelRoute]
) -> None:
    failing = deployments[2]
    drive(breakers, clock, open=[failing])

    response = admin_client.post(reverse(RESET, args=[failing.pk]), follow=True)

    assert response.redirect_chain == [(reverse(PANEL), 302)]
    assert breakers.state(failing.pk).state == CLOSED
    assert not breakers.is_open(failing.pk)
    history = BreakerTransition.objects.filter(route_id=failing.pk)
    assert list(history.values_list("from_state", "to_state", "reason")) == [(OPEN, CLOSED, "reset by an operator")]
    entry = LogEntry.objects.get(object_id=str(failing.pk))
    assert (entry.user.username, entry.get_change_message()) == ("admin", "Reset its circuit breaker.")
    assert f"The circuit breaker of {failing} is closed again" in response.content.decode()
    assert [row.label for row in response.context["rows"]] == ["closed"] * 3


def test_resetting_a_closed_breaker_changes_nothing_and_says_so(
    admin_client: Client, breakers: Breakers, deployments: list[ModelRoute]
) -> None:
    response = admin_client.post(reverse(RESET, args=[deployments[0].pk]), follow=True)

    assert "is already closed" in response.content.decode()
    assert not BreakerTransition.objects.exists()
    assert not LogEntry.objects.exists()


def test_a_reset_is_a_post_with_the_csrf_token(
    admin_client: Client, breakers: Breakers, clock: FakeClock, deployments: list[ModelRoute]
) -> None:
    failing = deployments[0]
    drive(breakers, clock, open=[failing])
    root = make_user(staff=True)
    root.is_superuser = True
    root.save()
    guarded = Client(enforce_csrf_checks=True)
    guarded.force_login(root)

    assert admin_client.get(reverse(RESET, args=[failing.pk])).status_code == 405
    assert guarded.post(reverse(RESET, args=[failing.pk])).status_code == 403
    assert breakers.state(failing.pk).state == OPEN


def test_a_reset_needs_the_permission_to_change_deployments(
    breakers: Breakers, clock: FakeClock, deployments: list[ModelRoute]
) -> None:
    failing = deployments[0]
    drive(breakers, clock, open=[failing])
    viewer = _staff("view_modelroute")

    panel = viewer.get(reverse(PANEL))

    assert panel.status_code == 200
    assert [row.label for row in panel.context["rows"]][0] == "open"
    assert 'value="Reset"' not in panel.content.decode()
    assert viewer.post(reverse(RESET, args=[failing.pk])).status_code == 403
    assert breakers.state(failing.pk).state == OPEN
    assert _staff("view_breakertransition").get(reverse(PANEL)).status_code == 403
    assert _staff("change_modelroute").post(reverse(RESET, args=[failing.pk])).status_code == 302
    assert breakers.state(failing.pk).state == CLOSED


def test_anyone_but_staff_gets_the_sign_in_page(
    breakers: Breakers, clock: FakeClock, deployments: list[ModelRoute]
) -> None:
    failing = deployments[0]
    drive(breakers, clock, open=[failing])
    member = Client()
    member.force_login(make_user(staff=False))

    for client in (Client(), member):
        for response in (
            client.get(reverse(PANEL)),
            client.post(reverse(RESET, args=[failing.pk])),
            client.get(reverse(HISTORY)),
        ):
            assert response.status_code == 302
            assert response["Location"].startswith(reverse("admin:login"))
    assert breakers.state(failing.pk).state == OPEN


def test_the_panel_answers_when_redis_does_not(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch, deployments: list[ModelRoute]
) -> None:
    reads: list[int] = []

    class CountedBreakers(RedisBreakers):
        def state(self, route_id: int):  # type: ignore[no-untyped-def]
            reads.append(route_id)
            return super().state(route_id)

    down = CountedBreakers(f"redis://127.0.0.1:{_closed_port()}/0", prefix=new_prefix(), rules=RULES)
    monkeypatch.setattr("gateway.admin.breakers_for_settings", lambda: down)

    response = admin_client.get(reverse(PANEL))

    assert response.status_code == 200
    assert [row.label for row in response.context["rows"]] == [UNREACHABLE] * 3
    assert "Redis does not answer" in response.content.decode()
    assert len(reads) == 1, "once Redis has not answered, the page asks it no more"
    reset = admin_client.post(reverse(RESET, args=[deployments[0].pk]), follow=True)
    assert "Redis does not answer: the circuit breaker of" in reset.content.decode()
    assert not LogEntry.objects.exists()


# --- the history --------------------------------------------------------------------------------------------


def _transitions(deployments: list[ModelRoute]) -> list[BreakerTransition]:
    start = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
    moves = [(0, CLOSED, OPEN), (1, CLOSED, OPEN), (0, OPEN, CLOSED)]
    return [
        BreakerTransition.objects.create(
            route_id=deployments[index].pk,
            route_name=deployments[index].name,
            from_state=before,
            to_state=after,
            reason=WHY,
            at=start + timedelta(minutes=minute),
        )
        for minute, (index, before, after) in enumerate(moves)
    ]


def test_the_history_lists_transitions_newest_first(admin_client: Client, deployments: list[ModelRoute]) -> None:
    rows = _transitions(deployments)

    response = admin_client.get(reverse(HISTORY))

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == rows[::-1]
    assert reverse(PANEL) in response.content.decode()


def test_the_history_filters_by_deployment_and_state_and_searches_by_name(
    admin_client: Client, deployments: list[ModelRoute]
) -> None:
    first, second, reopened = _transitions(deployments)

    def listed(**query: str) -> list[BreakerTransition]:
        return list(admin_client.get(reverse(HISTORY), query).context["cl"].result_list)

    assert listed(route_id=str(deployments[0].pk)) == [reopened, first]
    assert listed(to_state=OPEN) == [second, first]
    assert listed(q="globex") == [second]
    assert listed(route_id="not-a-number") == [reopened, second, first]


def test_the_history_cannot_be_added_to_changed_or_deleted(admin_client: Client, deployments: list[ModelRoute]) -> None:
    row = _transitions(deployments)[0]
    change = reverse("admin:gateway_breakertransition_change", args=[row.pk])

    assert admin_client.get(reverse("admin:gateway_breakertransition_add")).status_code == 403
    assert admin_client.get(change).status_code == 200, "read-only, but readable"
    assert admin_client.post(change, {"reason": "edited"}).status_code == 403
    assert admin_client.post(reverse("admin:gateway_breakertransition_delete", args=[row.pk])).status_code == 403
    bulk = admin_client.post(reverse(HISTORY), {"action": "delete_selected", "_selected_action": [row.pk]})
    assert bulk.status_code == 200, "the action is not offered: the list is shown again"
    row.refresh_from_db()
    assert row.reason == WHY
    assert BreakerTransition.objects.count() == 3


# --- the deployment and public model pages -----------------------------------------------------------------


def test_the_deployment_pages_show_its_breaker(
    admin_client: Client, breakers: Breakers, clock: FakeClock, deployments: list[ModelRoute]
) -> None:
    failing = deployments[1]
    drive(breakers, clock, open=[failing])

    listed = admin_client.get(reverse("admin:providers_modelroute_changelist")).content.decode()
    shown = admin_client.get(reverse("admin:providers_modelroute_change", args=[failing.pk])).content.decode()

    assert listed.count("<strong>open</strong> since") == 1
    assert "Breaker panel" in listed
    assert "<strong>open</strong> since" in shown
    assert f"3 failures in a row: {WHY}" in shown
    assert shown.count(f": {WHY}</li>") == 3


def test_the_deployment_list_resets_the_selected_breakers(
    admin_client: Client, breakers: Breakers, clock: FakeClock, deployments: list[ModelRoute]
) -> None:
    drive(breakers, clock, open=deployments[:2])

    admin_client.post(
        reverse("admin:providers_modelroute_changelist"),
        {"action": "reset_breakers", "_selected_action": [route.pk for route in deployments]},
    )

    assert [breakers.state(route.pk).state for route in deployments] == [CLOSED] * 3
    assert BreakerTransition.objects.filter(to_state=CLOSED).count() == 2
    assert LogEntry.objects.count() == 2


def test_a_public_model_page_shows_each_deployments_breaker(
    admin_client: Client, breakers: Breakers, clock: FakeClock, deployments: list[ModelRoute]
) -> None:
    drive(breakers, clock, open=[deployments[2]])

    html = admin_client.get(reverse("admin:providers_publicmodel_change", args=[deployments[0].model_id])).content
    page = html.decode()

    assert all(route.name in page for route in deployments)
    assert page.count("<td>closed</td>") == 2
    assert "<strong>open</strong> since" in page
    assert f"<td>{WHY}</td>" in page


def test_the_pages_keep_one_registration_per_model_with_the_prices(admin_client: Client) -> None:
    show_breakers_on_deployments()  # a second time changes nothing

    assert isinstance(admin.site.get_model_admin(ModelRoute), CostedModelRouteAdmin)
    assert isinstance(admin.site.get_model_admin(PublicModel), PricedPublicModelAdmin)
    assert type(admin.site.get_model_admin(ModelRoute)).__mro__[2] is CostedModelRouteAdmin


def test_the_pages_run_no_inline_script(
    admin_client: Client, breakers: Breakers, clock: FakeClock, deployments: list[ModelRoute]
) -> None:
    drive(breakers, clock, open=[deployments[0]])
    _transitions(deployments)
    pages = [
        reverse(PANEL),
        reverse(HISTORY),
        reverse("admin:providers_modelroute_changelist"),
        reverse("admin:providers_modelroute_change", args=[deployments[0].pk]),
        reverse("admin:providers_publicmodel_change", args=[deployments[0].model_id]),
    ]

    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        assert "script-src 'self'" in response["Content-Security-Policy"]
        assert _inline_code(response.content.decode()) == [], page
