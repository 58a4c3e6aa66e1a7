# Every existing tenant keeps describing models by default: the extra fields only add to OpenAI's four.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0008_tenant_memberships"),
    ]

    operations = [
        migrations.AddField(
            model_name="tenant",
            name="describe_models",
            field=models.BooleanField(
                default=True,
                help_text="GET /v1/models adds what Portico knows of each model (providers, capabilities, context "
                "window, prices, family) to OpenAI's four fields. Untick to answer with OpenAI's fields only.",
                verbose_name="describe models",
            ),
        ),
    ]
