from django.core.validators import RegexValidator
from django.db import migrations, models

from providers.credentials import decrypt_headers, encrypt_headers


def encrypt_existing(apps, schema_editor):
    Provider = apps.get_model("providers", "Provider")
    for provider in Provider.objects.exclude(extra_headers={}):
        headers = {str(name): str(value) for name, value in (provider.extra_headers or {}).items()}
        provider.extra_headers_encrypted = encrypt_headers(headers)
        provider.save(update_fields=["extra_headers_encrypted"])


def decrypt_existing(apps, schema_editor):
    Provider = apps.get_model("providers", "Provider")
    for provider in Provider.objects.exclude(extra_headers_encrypted=""):
        provider.extra_headers = decrypt_headers(provider.extra_headers_encrypted)
        provider.save(update_fields=["extra_headers"])


class Migration(migrations.Migration):
    dependencies = [
        ("providers", "0003_prices_move_to_billing"),
    ]

    operations = [
        migrations.AddField(
            model_name="provider",
            name="credential_header",
            field=models.CharField(
                blank=True,
                help_text="The header that carries the credential; blank for the kind's own "
                "(Authorization: Bearer, x-api-key for Anthropic, api-key for Azure).",
                max_length=100,
                validators=[RegexValidator("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", "Enter a valid HTTP header name.")],
            ),
        ),
        migrations.AddField(
            model_name="provider",
            name="extra_headers_encrypted",
            field=models.TextField(blank=True, editable=False),
        ),
        migrations.RunPython(encrypt_existing, decrypt_existing),
        migrations.RemoveField(
            model_name="provider",
            name="extra_headers",
        ),
    ]
