"""The rollups sum the ledger's `cache_creation_tokens` too.

The column starts at 0 and the rollups' next runs add new rows' counts; the
ledger rows already rolled up (ids up to the cursor) are summed once here, so
the rollups hold the same totals as the ledger from the start. Only rows that
wrote to a prompt cache are read, grouped as each rollup groups them.
"""

from django.db import migrations, models

LEDGER = "billing_usagerecord"
# As billing/rollups.py buckets rows, frozen here as this migration runs it.
BUCKETS = {
    "postgresql": {
        "hour": "date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
        "day": "date_trunc('day', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
    },
    "sqlite": {
        "hour": "strftime('%%Y-%%m-%%d %%H:00:00', created_at)",
        "day": "strftime('%%Y-%%m-%%d 00:00:00', created_at)",
    },
}
DEPLOYMENT = {"model": "model", "provider": "provider", "deployment_id": "COALESCE(deployment_id, 0)"}
TENANT_KEY = {"tenant_id": "COALESCE(tenant_id, 0)", "api_key_id": "COALESCE(api_key_id, 0)"}
ROLLUPS = (
    ("billing_hourlyusagerollup", "hour", {**TENANT_KEY, **DEPLOYMENT}),
    ("billing_dailyusagerollup", "day", {**TENANT_KEY, **DEPLOYMENT}),
    ("billing_hourlydeploymentrollup", "hour", DEPLOYMENT),
    ("billing_dailydeploymentrollup", "day", DEPLOYMENT),
)


def count_rolled_up_rows(apps, schema_editor):
    connection = schema_editor.connection
    buckets = BUCKETS.get(connection.vendor)
    cursor_row = apps.get_model("billing", "UsageRollupCursor").objects.filter(pk=1).first()
    if buckets is None or cursor_row is None or not cursor_row.last_id:
        return
    with connection.cursor() as cursor:
        for table, span, group in ROLLUPS:
            selected = ", ".join(f"{expression} AS {name}" for name, expression in group.items())
            matched = " AND ".join(f"{table}.{name} = counted.{name}" for name in ("bucket", *group))
            cursor.execute(
                f"UPDATE {table} SET cache_creation_tokens = counted.total "  # noqa: S608 - constants only
                f"FROM (SELECT {buckets[span]} AS bucket, {selected}, SUM(cache_creation_tokens) AS total "
                f"FROM {LEDGER} WHERE id <= %s AND cache_creation_tokens > 0 "
                f"GROUP BY {', '.join([buckets[span], *group.values()])}) AS counted "
                f"WHERE {matched}",
                [cursor_row.last_id],
            )


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0007_ledger_partitions"),
    ]

    operations = [
        *(
            migrations.AddField(
                model_name=model_name,
                name="cache_creation_tokens",
                field=models.BigIntegerField(db_default=0, default=0),
            )
            for model_name in (
                "dailydeploymentrollup",
                "dailyusagerollup",
                "hourlydeploymentrollup",
                "hourlyusagerollup",
            )
        ),
        migrations.RunPython(count_rolled_up_rows, migrations.RunPython.noop),
    ]
