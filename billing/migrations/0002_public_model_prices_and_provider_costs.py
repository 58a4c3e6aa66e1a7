"""Prices belong to public models; provider costs per deployment; the ledger records who served.

A price pointed at a route; it now points at the public model that route serves
(one model per route, as providers' 0005 made them), keeping its id and history.
"""

from decimal import Decimal

import django.core.validators
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def route_prices_to_models(apps, schema_editor):
    Price = apps.get_model("billing", "Price")
    for price in Price.objects.select_related("route"):
        price.public_model_id = price.route.model_id
        price.save(update_fields=["public_model"])


def model_prices_to_routes(apps, schema_editor):
    Price = apps.get_model("billing", "Price")
    ModelRoute = apps.get_model("providers", "ModelRoute")
    first_route = {}
    for route in ModelRoute.objects.order_by("-priority", "-pk"):
        first_route[route.model_id] = route.pk
    for price in Price.objects.all():
        price.route_id = first_route[price.public_model_id]
        price.save(update_fields=["route"])


def _per_million(**extra):
    return [
        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
        ("effective_from", models.DateTimeField(default=django.utils.timezone.now)),
        (
            "input_per_million",
            models.DecimalField(
                decimal_places=6,
                default=Decimal("0"),
                max_digits=12,
                validators=[django.core.validators.MinValueValidator(0)],
            ),
        ),
        (
            "output_per_million",
            models.DecimalField(
                decimal_places=6,
                default=Decimal("0"),
                max_digits=12,
                validators=[django.core.validators.MinValueValidator(0)],
            ),
        ),
        (
            "cached_input_per_million",
            models.DecimalField(
                blank=True,
                decimal_places=6,
                help_text="Leave empty to charge cached input tokens at the input price.",
                max_digits=12,
                null=True,
                validators=[django.core.validators.MinValueValidator(0)],
            ),
        ),
        *extra.items(),
    ]


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0001_initial"),
        ("providers", "0005_public_models"),
    ]

    operations = [
        migrations.AddField(
            model_name="price",
            name="public_model",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="providers.publicmodel"
            ),
        ),
        migrations.RunPython(route_prices_to_models, model_prices_to_routes),
        migrations.RemoveConstraint(model_name="price", name="one_price_per_route_instant"),
        migrations.AlterModelOptions(name="price", options={"ordering": ["-effective_from"]}),
        migrations.RemoveField(model_name="price", name="route"),
        migrations.RenameField(model_name="price", old_name="public_model", new_name="route"),
        migrations.AlterField(
            model_name="price",
            name="route",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="prices", to="providers.publicmodel"
            ),
        ),
        migrations.AlterModelOptions(name="price", options={"ordering": ["route", "-effective_from"]}),
        migrations.AddConstraint(
            model_name="price",
            constraint=models.UniqueConstraint(fields=("route", "effective_from"), name="one_price_per_route_instant"),
        ),
        migrations.CreateModel(
            name="DeploymentPrice",
            fields=_per_million(
                deployment=models.ForeignKey(
                    on_delete=django.db.models.deletion.CASCADE, related_name="costs", to="providers.modelroute"
                ),
            ),
            options={"verbose_name": "provider cost", "ordering": ["deployment", "-effective_from"]},
        ),
        migrations.AddConstraint(
            model_name="deploymentprice",
            constraint=models.UniqueConstraint(
                fields=("deployment", "effective_from"), name="one_cost_per_deployment_instant"
            ),
        ),
        migrations.AddField(
            model_name="usagerecord",
            name="deployment_id",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="usagerecord",
            name="deployment",
            field=models.CharField(
                blank=True, db_default="", default="", help_text="provider/upstream model that served.", max_length=200
            ),
        ),
        migrations.AddField(
            model_name="usagerecord",
            name="attempts",
            field=models.PositiveSmallIntegerField(
                db_default=1, default=1, help_text="Upstream attempts this call made."
            ),
        ),
        migrations.AddField(
            model_name="usagerecord",
            name="provider_cost",
            field=models.DecimalField(
                db_default=Decimal("0"),
                decimal_places=10,
                default=Decimal("0"),
                help_text="USD the providers charge for this call.",
                max_digits=20,
            ),
        ),
    ]
