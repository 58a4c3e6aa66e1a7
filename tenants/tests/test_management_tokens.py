"""Management API tokens: issued once, stored as a prefix and a keyed hash, accepted as Token or Bearer."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection

from tenants.keys import key_digest
from tenants.models import ManagementToken, TenantRole
from tenants.selectors import management_token_user
from tenants.services import management_token_create, membership_create
from tenants.tokens import PREFIX_LENGTH, TOKEN_PREFIX

pytestmark = pytest.mark.django_db

LEGACY_TOKEN = "0123456789abcdef0123456789abcdef01234567"  # the 40 hex characters DRF's tokens had


def make_user(*, username: str | None = None, admin_of=()):
    user = get_user_model().objects.create_user(username=username or f"user-{get_user_model().objects.count()}")
    for tenant in admin_of:
        membership_create(tenant=tenant, user=user, role=TenantRole.ADMIN)
    return user


def _status(client, token: str, scheme: str = "Token") -> int:
    return client.get("/api/tenants/", headers={"Authorization": f"{scheme} {token}"}).status_code


def test_a_token_is_stored_as_its_prefix_and_a_keyed_hash_only(tenant):
    token, plaintext = management_token_create(user=make_user(admin_of=[tenant]))

    stored = ManagementToken.objects.get(pk=token.pk)
    assert plaintext.startswith(TOKEN_PREFIX)
    assert stored.prefix == plaintext[:PREFIX_LENGTH]
    assert stored.digest == key_digest(plaintext)
    assert plaintext not in {stored.prefix, stored.digest}


@pytest.mark.parametrize("scheme", ["Token", "Bearer", "bearer"])
def test_it_accepts_a_token_sent_as_token_or_bearer(client, tenant, scheme):
    _token, plaintext = management_token_create(user=make_user(admin_of=[tenant]))

    assert _status(client, plaintext, scheme) == 200


def test_it_refuses_a_token_whose_secret_differs_from_a_known_prefix(client, tenant):
    _token, plaintext = management_token_create(user=make_user(admin_of=[tenant]))
    forged = plaintext[:-1] + ("a" if plaintext[-1] != "a" else "b")

    assert _status(client, forged) == 401
    assert management_token_user(presented=forged) is None


@pytest.mark.parametrize("presented", ["", "pt-short", "x" * 500, "pt-\u00e9t\u00e9"])
def test_it_refuses_unknown_or_malformed_tokens(client, tenant, presented):
    management_token_create(user=make_user(admin_of=[tenant]))

    assert management_token_user(presented=presented) is None


def test_it_refuses_the_token_of_an_inactive_user(client, tenant):
    user = make_user(admin_of=[tenant])
    _token, plaintext = management_token_create(user=user)
    user.is_active = False
    user.save()

    assert _status(client, plaintext) == 401


def test_createapitoken_prints_a_token_once_that_opens_the_api(client, tenant, capsys):
    make_user(username="ada", admin_of=[tenant])

    call_command("createapitoken", "ada")
    token = capsys.readouterr().out.strip()

    assert _status(client, token) == 200
    assert token not in str(ManagementToken.objects.values_list().get())


def test_createapitoken_refuses_to_make_a_second_token_without_rotate(client, tenant, capsys):
    make_user(username="ada", admin_of=[tenant])
    call_command("createapitoken", "ada")
    first = capsys.readouterr().out.strip()

    with pytest.raises(CommandError, match="already has a token"):
        call_command("createapitoken", "ada")

    assert _status(client, first) == 200


def test_createapitoken_rotates_a_token_on_request(client, tenant, capsys):
    make_user(username="ada", admin_of=[tenant])
    call_command("createapitoken", "ada")
    old = capsys.readouterr().out.strip()

    call_command("createapitoken", "ada", "--rotate")
    new = capsys.readouterr().out.strip()

    assert old != new
    assert _status(client, old) == 401
    assert _status(client, new) == 200


def test_createapitoken_warns_about_a_user_the_api_would_refuse(db, capsys):
    make_user(username="bob")

    call_command("createapitoken", "bob")

    assert "neither staff nor a tenant admin" in capsys.readouterr().err


def test_createapitoken_names_an_unknown_user(db):
    with pytest.raises(CommandError, match="No user 'nobody'"):
        call_command("createapitoken", "nobody")


def test_the_migration_hashes_plain_tokens_which_keep_working_and_drops_the_plaintexts(client, tenant):
    user = make_user(admin_of=[tenant])
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, user_id integer, created timestamptz)"
        )
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, %s, now())", [LEGACY_TOKEN, user.pk])
    migration = importlib.import_module("tenants.migrations.0005_hash_plain_management_tokens")

    with connection.schema_editor() as editor:
        migration.hash_plain_tokens(apps, editor)

    assert "authtoken_token" not in connection.introspection.table_names()
    assert ManagementToken.objects.get(user=user).digest == key_digest(LEGACY_TOKEN)
    assert _status(client, LEGACY_TOKEN) == 200


def test_the_migration_does_nothing_where_there_were_no_plain_tokens(db):
    migration = importlib.import_module("tenants.migrations.0005_hash_plain_management_tokens")

    with connection.schema_editor() as editor:
        migration.hash_plain_tokens(apps, editor)

    assert not ManagementToken.objects.exists()
