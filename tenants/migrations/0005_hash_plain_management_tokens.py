"""Hash the management API tokens Portico used to keep in clear (DRF's `authtoken` table).

Each token is kept as its prefix and keyed hash, so it goes on working; then
the plaintext table is dropped, and its migrations forgotten, since the app
that made it is no longer installed. A database that never had the table has
nothing to do. There is no way back: the plaintexts are gone.
"""

from datetime import UTC, datetime

from django.db import migrations
from django.utils.dateparse import parse_datetime

from tenants.keys import key_digest
from tenants.tokens import token_prefix

PLAIN_TABLE = "authtoken_token"


def _aware(created):
    """Postgres hands back an aware time; SQLite a string (or naive time) in UTC, as Django stored it."""
    if isinstance(created, str):
        created = parse_datetime(created)
    if isinstance(created, datetime) and created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return created


def hash_plain_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if PLAIN_TABLE not in connection.introspection.table_names():
        return
    management_token = apps.get_model("tenants", "ManagementToken")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id, created FROM {PLAIN_TABLE}")  # noqa: S608 - a fixed name
        rows = cursor.fetchall()
    management_token.objects.bulk_create(
        management_token(user_id=user_id, prefix=token_prefix(key), digest=key_digest(key), created_at=_aware(created))
        for key, user_id, created in rows
    )
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {PLAIN_TABLE}")
        cursor.execute("DELETE FROM django_migrations WHERE app = 'authtoken'")


class Migration(migrations.Migration):
    dependencies = [("tenants", "0004_management_token")]

    operations = [migrations.RunPython(hash_plain_tokens, migrations.RunPython.noop)]
