# Existing tenants start with no origins: browsers stay refused until an operator lists one.

from django.db import migrations, models

import tenants.cors


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0009_tenant_describe_models"),
    ]

    operations = [
        migrations.AddField(
            model_name="tenant",
            name="cors_origins",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text="Web pages that may call /v1/ with this tenant's keys from a browser: exact origins such as "
                '"https://app.example.com", one per line. Empty: no browser access.',
                validators=[tenants.cors.validate_cors_origins],
                verbose_name="CORS origins",
            ),
        ),
    ]
