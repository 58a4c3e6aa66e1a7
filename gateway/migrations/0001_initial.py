from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="BreakerTransition",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("route_id", models.PositiveIntegerField(help_text="The deployment (ModelRoute) id.")),
                (
                    "route_name",
                    models.CharField(blank=True, help_text="provider/upstream model, when it changed.", max_length=200),
                ),
                (
                    "from_state",
                    models.CharField(
                        choices=[("closed", "closed"), ("open", "open"), ("half_open", "half-open")], max_length=16
                    ),
                ),
                (
                    "to_state",
                    models.CharField(
                        choices=[("closed", "closed"), ("open", "open"), ("half_open", "half-open")], max_length=16
                    ),
                ),
                ("reason", models.CharField(blank=True, max_length=300)),
                ("at", models.DateTimeField()),
                (
                    "process",
                    models.CharField(blank=True, help_text="host:pid of the process that saw it happen.", max_length=100),
                ),
            ],
            options={
                "ordering": ["-at", "-id"],
                "indexes": [models.Index(fields=["route_id", "-at"], name="breaker_route_at")],
            },
        ),
    ]
