"""Public models own their deployments.

Every route becomes a public model with the same id, metadata and capabilities,
owning that route as its only deployment. Allowlists and prices follow in the
tenants and billing migrations that depend on this one.
"""

import django.core.validators
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

import providers.models
import providers.options

# What moves from the route to its public model.
MOVED = [
    "owned_by",
    "context_window",
    "max_output_tokens",
    "supports_chat",
    "supports_streaming",
    "supports_tools",
    "supports_vision",
    "supports_json_mode",
    "supports_embeddings",
    "supports_moderation",
    "supports_images",
    "supports_transcription",
]


def routes_to_public_models(apps, schema_editor):
    ModelRoute = apps.get_model("providers", "ModelRoute")
    PublicModel = apps.get_model("providers", "PublicModel")
    for route in ModelRoute.objects.order_by("pk"):
        model = PublicModel.objects.create(
            public_id=route.public_id,
            active=route.active,
            created_at=route.created_at,
            **{name: getattr(route, name) for name in MOVED},
        )
        route.model = model
        route.save(update_fields=["model"])


def public_models_to_routes(apps, schema_editor):
    """Back to one route per public id: possible only while each public model has a single deployment."""
    ModelRoute = apps.get_model("providers", "ModelRoute")
    for route in ModelRoute.objects.select_related("model").order_by("pk"):
        if ModelRoute.objects.filter(model=route.model).count() > 1:
            raise RuntimeError(f"{route.model.public_id} has several deployments: keep one before migrating back.")
        route.public_id = route.model.public_id
        for name in MOVED:
            setattr(route, name, getattr(route.model, name))
        route.save()


class Migration(migrations.Migration):
    dependencies = [
        ("providers", "0004_provider_credential_header_encrypted_headers"),
    ]

    operations = [
        migrations.CreateModel(
            name="PublicModel",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "public_id",
                    models.CharField(
                        help_text="The model id tenants send, e.g. 'gpt-4o'.", max_length=200, unique=True
                    ),
                ),
                ("owned_by", models.CharField(default="portico", max_length=100)),
                (
                    "model_family",
                    models.CharField(
                        blank=True,
                        help_text="e.g. 'gpt-4o' or 'llama-3'; a request may name a family instead.",
                        max_length=100,
                    ),
                ),
                ("context_window", models.PositiveIntegerField(blank=True, null=True)),
                ("max_output_tokens", models.PositiveIntegerField(blank=True, null=True)),
                ("supports_chat", models.BooleanField(default=True)),
                ("supports_streaming", models.BooleanField(default=True)),
                ("supports_tools", models.BooleanField(default=True)),
                ("supports_vision", models.BooleanField(default=False)),
                ("supports_json_mode", models.BooleanField(default=True)),
                ("supports_embeddings", models.BooleanField(default=False)),
                ("supports_moderation", models.BooleanField(default=False)),
                ("supports_images", models.BooleanField(default=False, help_text="Image generation.")),
                ("supports_transcription", models.BooleanField(default=False, help_text="Audio transcription.")),
                (
                    "strategy",
                    models.CharField(
                        choices=[
                            ("priority", "priority"),
                            ("weighted", "weighted"),
                            ("least-busy", "least-busy"),
                            ("latency", "latency"),
                            ("cost", "cost"),
                        ],
                        default="priority",
                        help_text="How a deployment is chosen among the healthy ones.",
                        max_length=20,
                    ),
                ),
                (
                    "fallbacks",
                    models.JSONField(
                        blank=True,
                        default=list,
                        help_text="Public model ids tried in order once every deployment of this one has failed.",
                        validators=[providers.models.validate_public_ids],
                    ),
                ),
                (
                    "retry_on",
                    models.JSONField(
                        blank=True,
                        default=providers.options.default_retry_on,
                        help_text="The failures that move a call on to the next deployment.",
                        validators=[providers.models.validate_retry_on],
                    ),
                ),
                (
                    "mid_stream_recovery",
                    models.BooleanField(
                        default=False,
                        help_text="Continue a stream that breaks after its first byte from another deployment.",
                    ),
                ),
                (
                    "ensemble",
                    models.CharField(
                        blank=True,
                        choices=[("cascade", "cascade"), ("hedge", "hedge"), ("vote", "vote")],
                        help_text="Leave empty for none.",
                        max_length=10,
                    ),
                ),
                (
                    "timeout",
                    models.FloatField(
                        blank=True,
                        help_text="Seconds for the whole call, retries included.",
                        null=True,
                        validators=[django.core.validators.MinValueValidator(0.1)],
                    ),
                ),
                (
                    "first_byte_timeout",
                    models.FloatField(
                        blank=True,
                        help_text="Seconds to wait for a first byte.",
                        null=True,
                        validators=[django.core.validators.MinValueValidator(0.1)],
                    ),
                ),
                (
                    "stall_timeout",
                    models.FloatField(
                        blank=True,
                        help_text="Seconds of silence that end a stream.",
                        null=True,
                        validators=[django.core.validators.MinValueValidator(0.1)],
                    ),
                ),
                ("active", models.BooleanField(default=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
            ],
            options={"verbose_name": "public model", "ordering": ["public_id"]},
        ),
        migrations.AddField(
            model_name="modelroute",
            name="model",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="deployments",
                to="providers.publicmodel",
            ),
        ),
        migrations.RunPython(routes_to_public_models, public_models_to_routes),
        migrations.AlterField(
            model_name="modelroute",
            name="model",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="deployments", to="providers.publicmodel"
            ),
        ),
        *[migrations.RemoveField(model_name="modelroute", name=name) for name in ["public_id", *MOVED]],
        migrations.AddField(
            model_name="modelroute",
            name="priority",
            field=models.IntegerField(default=0, help_text="Lower is tried first."),
        ),
        migrations.AddField(
            model_name="modelroute",
            name="weight",
            field=models.PositiveIntegerField(
                default=1, help_text="Share of traffic under the weighted strategy; 0 only when nothing else is left."
            ),
        ),
        migrations.AddField(
            model_name="modelroute",
            name="max_requests_per_minute",
            field=models.PositiveIntegerField(
                blank=True, null=True, validators=[django.core.validators.MinValueValidator(1)]
            ),
        ),
        migrations.AddField(
            model_name="modelroute",
            name="max_tokens_per_minute",
            field=models.PositiveIntegerField(
                blank=True, null=True, validators=[django.core.validators.MinValueValidator(1)]
            ),
        ),
        migrations.AddField(
            model_name="modelroute",
            name="max_in_flight",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Requests in flight at once.",
                null=True,
                validators=[django.core.validators.MinValueValidator(1)],
            ),
        ),
        migrations.AlterModelOptions(
            name="modelroute",
            options={"ordering": ["priority", "id"], "verbose_name": "deployment"},
        ),
    ]
