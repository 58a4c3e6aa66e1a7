from __future__ import annotations

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from providers.adapters import kind_choices

# RFC 9110's token: what a header name may be made of.
HEADER_NAME = RegexValidator(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", "Enter a valid HTTP header name.")


class Provider(models.Model):
    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=32, choices=kind_choices, default="openai")
    base_url = models.URLField(
        max_length=500, blank=True, help_text="e.g. https://api.openai.com/v1 or http://vllm:8000/v1"
    )
    # Fernet token, see providers/credentials.py; never shown back in the admin.
    credential_encrypted = models.TextField(blank=True, editable=False)
    credential_header = models.CharField(
        max_length=100,
        blank=True,
        validators=[HEADER_NAME],
        help_text="The header that carries the credential; blank for the kind's own "
        "(Authorization: Bearer, x-api-key for Anthropic, api-key for Azure).",
    )
    connect_timeout = models.FloatField(default=5.0, validators=[MinValueValidator(0.1)], help_text="Seconds.")
    read_timeout = models.FloatField(
        default=120.0, validators=[MinValueValidator(0.1)], help_text="Seconds to wait for each part of the answer."
    )
    total_timeout = models.FloatField(
        default=600.0, validators=[MinValueValidator(0.1)], help_text="Seconds for a whole request, stream included."
    )
    # Headers sent on every upstream call, as a Fernet token of their JSON: any value may be a key.
    extra_headers_encrypted = models.TextField(blank=True, editable=False)
    api_version = models.CharField(
        max_length=40, blank=True, help_text="Azure OpenAI: the api-version query parameter, e.g. 2024-10-21."
    )
    # What an OpenAI-compatible server accepts, declared here rather than special-cased in code.
    accepts_stream_options = models.BooleanField(
        default=True, help_text="Untick for servers that reject `stream_options` (stream usage is then counted)."
    )
    accepts_max_completion_tokens = models.BooleanField(
        default=True, help_text="Untick for servers that know only `max_tokens`: the field is renamed for them."
    )
    serves_completions = models.BooleanField(
        default=True,
        help_text="The server has the legacy /completions endpoint; if not, it is bridged onto chat completions.",
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def has_credential(self) -> bool:
        return bool(self.credential_encrypted)


class ModelRoute(models.Model):
    public_id = models.CharField(max_length=200, unique=True, help_text="The model id tenants send, e.g. 'gpt-4o'.")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="routes")
    upstream_model = models.CharField(max_length=200, help_text="The model name the provider expects.")
    owned_by = models.CharField(max_length=100, default="portico")
    context_window = models.PositiveIntegerField(null=True, blank=True)
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True)
    supports_chat = models.BooleanField(default=True)
    supports_streaming = models.BooleanField(default=True)
    supports_tools = models.BooleanField(default=True)
    supports_vision = models.BooleanField(default=False)
    supports_json_mode = models.BooleanField(default=True)
    supports_embeddings = models.BooleanField(default=False)
    supports_moderation = models.BooleanField(default=False)
    supports_images = models.BooleanField(default=False, help_text="Image generation.")
    supports_transcription = models.BooleanField(default=False, help_text="Audio transcription.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["public_id"]
        verbose_name = "model route"

    def __str__(self) -> str:
        return self.public_id
