"""Allowlists name public models: each allowed route becomes the public model it now serves."""

from django.db import migrations, models


def routes_to_models(apps, schema_editor):
    for name in ("Tenant", "ApiKey"):
        owner_model = apps.get_model("tenants", name)
        for owner in owner_model.objects.prefetch_related("allowed_models"):
            owner.allowed_public_models.set([route.model_id for route in owner.allowed_models.all()])


def models_to_routes(apps, schema_editor):
    for name in ("Tenant", "ApiKey"):
        owner_model = apps.get_model("tenants", name)
        for owner in owner_model.objects.prefetch_related("allowed_public_models__deployments"):
            owner.allowed_models.set(
                [route.pk for model in owner.allowed_public_models.all() for route in model.deployments.all()]
            )


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0005_hash_plain_management_tokens"),
        ("providers", "0005_public_models"),
    ]

    operations = [
        migrations.AddField(
            model_name="tenant",
            name="allowed_public_models",
            field=models.ManyToManyField(blank=True, related_name="+", to="providers.publicmodel"),
        ),
        migrations.AddField(
            model_name="apikey",
            name="allowed_public_models",
            field=models.ManyToManyField(blank=True, related_name="+", to="providers.publicmodel"),
        ),
        migrations.RunPython(routes_to_models, models_to_routes),
        migrations.RemoveField(model_name="tenant", name="allowed_models"),
        migrations.RemoveField(model_name="apikey", name="allowed_models"),
        migrations.RenameField(model_name="tenant", old_name="allowed_public_models", new_name="allowed_models"),
        migrations.RenameField(model_name="apikey", old_name="allowed_public_models", new_name="allowed_models"),
        migrations.AlterField(
            model_name="tenant",
            name="allowed_models",
            field=models.ManyToManyField(
                blank=True,
                help_text="Models this tenant may call. Leave empty to allow every active model.",
                related_name="+",
                to="providers.publicmodel",
            ),
        ),
        migrations.AlterField(
            model_name="apikey",
            name="allowed_models",
            field=models.ManyToManyField(
                blank=True,
                help_text="Narrows the tenant's models for this key. Leave empty to allow all of the tenant's models.",
                related_name="+",
                to="providers.publicmodel",
            ),
        ),
    ]
