"""`portico config export` and `portico config apply`: the setup as a YAML file, and a database made to match it.

The setup (setup_config_factories.py) holds every section and every secret;
what an apply did is checked in the rows and in what the hot path loads from
them (key grants, the billing snapshot).
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, call_command
from django.db.models.signals import post_delete, post_save

from billing.facade import load_billing
from billing.models import Budget, Price, RateLimit
from gateway.tests.setup_config_factories import FUTURE, SECRETS, make_setup
from providers.credentials import decrypt_credential
from providers.models import ModelListSource, ModelRoute, Provider, PublicModel
from tenants.facade import authenticate, load_key_grants
from tenants.models import Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return make_setup()


def export() -> str:
    out = io.StringIO()
    call_command("config", "export", stdout=out)
    return out.getvalue()


def apply(tmp_path: Path, text: str, *options: str) -> str:
    path = tmp_path / "portico.yaml"
    path.write_text(text)
    out = io.StringIO()
    call_command("config", "apply", str(path), *options, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def edited(text: str, change: Any) -> str:
    """The exported text, changed by `change(document)` as an operator would edit it."""
    document = yaml.safe_load(text)
    change(document)
    return yaml.safe_dump(document, sort_keys=False)


def _section(document: dict[str, Any], section: str, key: str, value: str) -> dict[str, Any]:
    return next(entry for entry in document[section] if entry[key] == value)


@pytest.fixture
def saves() -> Iterator[list[str]]:
    """Every row saved or deleted meanwhile, by model name."""
    seen: list[str] = []

    def note(sender: Any, **_: Any) -> None:
        seen.append(sender.__name__)

    post_save.connect(note, weak=False, dispatch_uid="setup-config-saves")
    post_delete.connect(note, weak=False, dispatch_uid="setup-config-deletes")
    yield seen
    post_save.disconnect(dispatch_uid="setup-config-saves")
    post_delete.disconnect(dispatch_uid="setup-config-deletes")


# --- export -----------------------------------------------------------------------------------------------------


def test_export_writes_every_section_with_secrets_as_references(setup):
    text = export()
    document = yaml.safe_load(text)

    openai = _section(document, "providers", "name", "openai-prod")
    assert openai["credential"] == "${PORTICO_PROVIDER_OPENAI_PROD_CREDENTIAL}"
    assert openai["extra_headers"] == {
        "OpenAI-Organization": "${PORTICO_PROVIDER_OPENAI_PROD_HEADER_OPENAI_ORGANIZATION}"
    }
    assert _section(document, "providers", "name", "echo")["credential"] == ""
    assert [p["name"] for p in document["providers"]] == ["azure-eu", "echo", "openai-prod"]
    assert _section(document, "model_list_sources", "name", "catalog")["credential"] == (
        "${PORTICO_MODEL_LIST_CATALOG_CREDENTIAL}"
    )
    model = _section(document, "models", "public_id", "gpt-4o")
    assert (model["strategy"], model["fallbacks"], model["context_window"]) == ("weighted", ["gpt-4o-mini"], 128_000)
    assert model["capabilities"] == ["chat", "streaming", "tools", "vision", "json_mode"]
    assert [p["effective_from"] for p in model["prices"]] == ["2026-01-01T00:00:00Z", "2099-01-01T00:00:00Z"]
    assert model["prices"][0]["input_per_million"] == "2.5"
    assert [(d["provider"], d["upstream_model"]) for d in model["deployments"]] == [
        ("openai-prod", "gpt-4o"),
        ("azure-eu", "gpt-4o-eu"),
    ]
    assert model["deployments"][0]["costs"][0]["input_per_million"] == "2.25"
    acme = _section(document, "tenants", "slug", "acme")
    assert (acme["allowed_models"], acme["queue_mode"], acme["queue_max_wait"]) == (["gpt-4o"], "wait", 45)
    assert [(r["model"], r["requests_per_minute"]) for r in acme["rate_limits"]] == [("", 600), ("gpt-4o", None)]
    assert acme["budget"] == {"period": "daily", "amount": "250.5", "soft_limit_percent": 80}
    assert _section(document, "tenants", "slug", "globex")["allowed_models"] is None


def test_export_holds_no_secret_no_key_and_nothing_a_model_list_makes(setup):
    text = export()

    for secret in [*SECRETS.values(), setup["key"], setup["key"][:11]]:
        assert secret not in text
    assert "listed-model" not in text
    assert "requests_per_minute: 7" not in text  # the key's own limit goes with the key


def test_export_writes_to_a_file_and_the_same_setup_always_reads_the_same(setup, tmp_path):
    call_command("config", "export", "-o", str(tmp_path / "out.yaml"), stdout=io.StringIO(), stderr=io.StringIO())

    assert (tmp_path / "out.yaml").read_text() == export()


# --- apply ------------------------------------------------------------------------------------------------------


def test_applying_what_was_exported_changes_nothing(setup, tmp_path, saves):
    text = export()

    printed = apply(tmp_path, text)

    assert printed == "No changes: the database matches the file.\n"
    assert saves == []
    assert export() == text


def test_apply_prints_field_level_changes_and_makes_them(setup, tmp_path):
    def change(document: dict[str, Any]) -> None:
        _section(document, "providers", "name", "azure-eu")["read_timeout"] = 30.0
        model = _section(document, "models", "public_id", "gpt-4o")
        model["deployments"][0]["weight"] = 5
        model["deployments"].append({"provider": "echo", "upstream_model": "mock-echo", "priority": 9})
        acme = _section(document, "tenants", "slug", "acme")
        acme["allowed_models"] = ["gpt-4o", "gpt-4o-mini"]
        acme["budget"]["amount"] = "300"

    printed = apply(tmp_path, edited(export(), change))

    assert "  ~ azure-eu\n      read_timeout: 60.0 → 30.0\n" in printed
    assert "deployments[openai-prod/gpt-4o].weight: 1 → 5" not in printed  # it was 3
    assert "deployments[openai-prod/gpt-4o].weight: 3 → 5" in printed
    assert "deployments[echo/mock-echo]: added" in printed
    assert 'allowed_models: ["gpt-4o"] → ["gpt-4o", "gpt-4o-mini"]' in printed
    assert 'budget.amount: "250.5" → "300"' in printed
    assert printed.endswith("Applied.\n")
    assert Provider.objects.get(name="azure-eu").read_timeout == 30.0
    assert ModelRoute.objects.get(upstream_model="gpt-4o").weight == 5
    assert ModelRoute.objects.filter(model__public_id="gpt-4o", provider__name="echo").exists()
    grant = authenticate(load_key_grants(), setup["key"], time.time())
    assert grant.allowed_models == frozenset({"gpt-4o", "gpt-4o-mini"})
    assert Budget.objects.get(tenant__slug="acme").amount == Decimal(300)


def test_a_dry_run_prints_the_changes_and_changes_nothing(setup, tmp_path):
    text = edited(export(), lambda d: _section(d, "tenants", "slug", "globex").update(active=False))

    printed = apply(tmp_path, text, "--dry-run")

    assert "  ~ globex\n      active: true → false\n" in printed
    assert printed.endswith("Dry run: nothing was applied.\n")
    assert Tenant.objects.get(slug="globex").active is True


def test_a_secret_is_read_from_the_environment_and_never_printed(setup, tmp_path, monkeypatch):
    monkeypatch.setenv("PORTICO_PROVIDER_AZURE_EU_CREDENTIAL", "azure-ROTATED")

    printed = apply(tmp_path, export())

    assert "  ~ azure-eu\n      credential: changed\n" in printed
    assert "ROTATED" not in printed
    assert decrypt_credential(Provider.objects.get(name="azure-eu").credential_encrypted) == "azure-ROTATED"


def test_an_unset_variable_is_named_and_nothing_is_applied(setup, tmp_path, monkeypatch):
    monkeypatch.delenv("PORTICO_PROVIDER_AZURE_EU_CREDENTIAL")
    text = edited(export(), lambda d: d["tenants"].append({"slug": "initech", "name": "Initech"}))

    with pytest.raises(CommandError) as refused:
        apply(tmp_path, text)

    assert "providers[0].credential: the environment variable PORTICO_PROVIDER_AZURE_EU_CREDENTIAL is not set" in str(
        refused.value
    )
    assert not Tenant.objects.filter(slug="initech").exists()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "models:\n- public_id: a\n  deployments: [{provider: opnai, upstream_model: x}]\n",
            'models[0].deployments[0].provider: unknown provider "opnai"',
        ),
        (
            "tenants:\n- {slug: t, name: T, allowed_models: [gpt-5]}\n",
            'tenants[0].allowed_models: unknown model "gpt-5"',
        ),
        ("tenants:\n- {slug: t, name: T, queue_mode: sometimes}\n", "tenants[0].queue_mode: 'sometimes' is not one of"),
        ("tenants:\n- {slug: t, name: T, budget: {amount: -1}}\n", "tenants[0].budget.amount: must be a finite amount"),
        ("providers:\n- {name: p, kind: openai, colour: red}\n", "providers[0].colour: not a field of a provider"),
        ("providers:\n- {name: p, kind: openai, read_timeout: 2}\n- {name: p, kind: mock}\n", "providers[1]: a second"),
        ("models:\n- {public_id: a, fallbacks: [a]}\n", "models[0].fallbacks[0]: a model cannot be its own fallback"),
        ("models:\n- {public_id: listed-model}\n", 'models[0].public_id: "listed-model" is managed by'),
        ("tenants:\n- {slug: not a slug, name: T}\n", "tenants[0].slug: Enter a valid"),
        ("tenants: {}\n", "tenants: expected a list"),
        # A provider or model the console and the management API would refuse (providers.services).
        ("providers:\n- {name: p, kind: openai}\n", "providers[0].base_url: This kind of provider needs a base URL."),
        (
            "providers:\n- {name: p, kind: mock, read_timeout: 100000}\n",
            "providers[0].read_timeout: must be between 0.1 and 86400 seconds",
        ),
        (
            "providers:\n- {name: p, kind: mock, extra_headers: {'bad header': x}}\n",
            "providers[0].extra_headers:",
        ),
        (
            "models:\n- {public_id: a, stall_timeout: 0.01}\n",
            "models[0].stall_timeout: must be between 0.1 and 86400 seconds",
        ),
        (
            "models:\n- public_id: a\n  deployments: [{provider: mock, upstream_model: x, priority: 5000000000}]\n",
            "models[0].deployments[0].priority:",
        ),
        ("colour: red\n", "colour: not a section"),
    ],
)
def test_a_problem_names_its_place_in_the_file_and_nothing_is_applied(setup, tmp_path, text, problem):
    before = export()

    with pytest.raises(CommandError) as refused:
        apply(tmp_path, text)

    assert problem in str(refused.value)
    assert export() == before


def test_a_service_refusing_the_last_entry_undoes_the_first(setup, tmp_path):
    text = "providers:\n- {name: fresh, kind: mock}\ntenants:\n- {slug: Not Valid, name: X}\n"

    with pytest.raises(CommandError, match=r"tenants\[0\]\.slug"):
        apply(tmp_path, text)

    assert not Provider.objects.filter(name="fresh").exists()


def test_yaml_off_is_the_queue_mode_not_false(setup, tmp_path):
    apply(tmp_path, "tenants:\n- slug: acme\n  name: Acme\n  queue_mode: off\n")

    assert Tenant.objects.get(slug="acme").queue_mode == "off"


def test_a_literal_reference_in_a_name_survives_a_round_trip(setup, tmp_path):
    tenant = Tenant.objects.get(slug="globex")
    tenant.name = "Globex ${NOT_A_VARIABLE}"
    tenant.save()
    text = export()

    assert apply(tmp_path, text) == "No changes: the database matches the file.\n"


# --- prices -----------------------------------------------------------------------------------------------------


def test_a_price_in_effect_is_history_and_the_file_cannot_change_it(setup, tmp_path):
    text = edited(
        export(), lambda d: _section(d, "models", "public_id", "gpt-4o")["prices"][0].update(input_per_million="9")
    )

    with pytest.raises(
        CommandError, match=r"models\[0\]\.prices\[0\]: the price from 2026-01-01T00:00:00Z is in effect"
    ):
        apply(tmp_path, text)

    assert Price.objects.get(route__public_id="gpt-4o", effective_from__year=2026).input_per_million == Decimal("2.5")


def test_a_scheduled_price_is_replaced_and_a_new_one_is_added(setup, tmp_path):
    def change(document: dict[str, Any]) -> None:
        prices = _section(document, "models", "public_id", "gpt-4o")["prices"]
        prices[1]["input_per_million"] = "1.5"
        prices.append({"effective_from": "2100-01-01T00:00:00Z", "input_per_million": 1, "output_per_million": 1})

    printed = apply(tmp_path, edited(export(), change))

    assert 'prices[2099-01-01T00:00:00Z].input_per_million: "2" → "1.5"' in printed
    assert "prices[2100-01-01T00:00:00Z]: added" in printed
    schedule = load_billing().prices["gpt-4o"]
    assert schedule.at(FUTURE.timestamp()).input == Decimal("1.5")
    assert len(schedule.prices) == 3


# --- what the file leaves out -----------------------------------------------------------------------------------


def _without(document: dict[str, Any]) -> None:
    document["tenants"] = [t for t in document["tenants"] if t["slug"] != "globex"]
    document["models"] = [m for m in document["models"] if m["public_id"] != "gpt-4o-mini"]
    _section(document, "models", "public_id", "gpt-4o")["fallbacks"] = []
    document["providers"] = [p for p in document["providers"] if p["name"] != "echo"]
    document["model_list_sources"] = []
    acme = _section(document, "tenants", "slug", "acme")
    acme["rate_limits"] = acme["rate_limits"][:1]
    _section(document, "models", "public_id", "gpt-4o")["deployments"].pop()
    _section(document, "models", "public_id", "gpt-4o")["prices"].pop()


def test_what_the_file_leaves_out_is_kept_without_prune(setup, tmp_path):
    printed = apply(tmp_path, edited(export(), _without))

    assert "  · globex: not in the file, kept (--prune: deactivated)" in printed
    assert "      deployments[azure-eu/gpt-4o-eu]: not in the file, kept" in printed
    assert Tenant.objects.get(slug="globex").active is True
    assert RateLimit.objects.filter(tenant__slug="acme").count() == 2
    assert Price.objects.filter(route__public_id="gpt-4o").count() == 2
    assert ModelListSource.objects.get(name="catalog").enabled is True


def test_prune_retires_what_the_file_leaves_out_and_keeps_history(setup, tmp_path):
    printed = apply(tmp_path, edited(export(), _without), "--prune")

    assert "  - globex: deactivated" in printed
    assert "  - gpt-4o-mini: deactivated" in printed
    assert "  - echo: deactivated" in printed
    assert "  - catalog: disabled" in printed
    assert "rate_limits[gpt-4o]: deleted" in printed
    assert "prices[2099-01-01T00:00:00Z]: withdrawn" in printed
    assert Tenant.objects.get(slug="globex").active is False
    assert PublicModel.objects.get(public_id="gpt-4o-mini").active is False
    assert Provider.objects.get(name="echo").active is False
    assert ModelListSource.objects.get(name="catalog").enabled is False
    assert ModelRoute.objects.get(upstream_model="gpt-4o-eu").active is False
    assert list(RateLimit.objects.filter(tenant__slug="acme").values_list("model", flat=True)) == [""]
    assert list(Price.objects.filter(route__public_id="gpt-4o").values_list("effective_from__year", flat=True)) == [
        2026
    ]
    # What a model-list source manages, and what is set on a key, are not the file's.
    assert PublicModel.objects.get(public_id="listed-model").active is True
    assert RateLimit.objects.filter(api_key__isnull=False).count() == 1


def test_pruning_twice_changes_nothing_the_second_time(setup, tmp_path, saves):
    text = edited(export(), _without)
    apply(tmp_path, text, "--prune")
    saves.clear()

    printed = apply(tmp_path, text, "--prune")

    assert printed == "No changes: the database matches the file.\n"
    assert saves == []


def test_a_section_left_out_is_not_touched_even_with_prune(setup, tmp_path):
    printed = apply(tmp_path, "version: 1\nproviders: []\n", "--prune", "--dry-run")

    assert "providers\n" in printed
    assert "tenants" not in printed
    assert "models" not in printed
