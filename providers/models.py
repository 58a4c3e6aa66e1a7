from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from providers.adapters import kind_choices
from providers.options import ENSEMBLES, RETRY_CLASSES, STRATEGIES, default_retry_on

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


def validate_retry_on(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValidationError("Enter a list of retry classes.")
    unknown = sorted(set(value) - set(RETRY_CLASSES))
    if unknown:
        raise ValidationError(f"Unknown retry classes: {', '.join(unknown)}; known: {', '.join(RETRY_CLASSES)}.")


def validate_public_ids(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(name, str) and name for name in value):
        raise ValidationError("Enter a list of public model ids.")


class PublicModel(models.Model):
    """What tenants name (`gpt-4o`): the capabilities it promises and how its deployments are chosen.

    Allowlists and the tenant's price point here, never at a deployment, so a model can be
    served by several providers and move between them without touching either.
    """

    public_id = models.CharField(max_length=200, unique=True, help_text="The model id tenants send, e.g. 'gpt-4o'.")
    owned_by = models.CharField(max_length=100, default="portico")
    model_family = models.CharField(
        max_length=100, blank=True, help_text="e.g. 'gpt-4o' or 'llama-3'; a request may name a family instead."
    )
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
    strategy = models.CharField(
        max_length=20,
        choices=[(name, name) for name in STRATEGIES],
        default="priority",
        help_text="How a deployment is chosen among the healthy ones.",
    )
    fallbacks = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_public_ids],
        help_text="Public model ids tried in order once every deployment of this one has failed.",
    )
    retry_on = models.JSONField(
        default=default_retry_on,
        blank=True,
        validators=[validate_retry_on],
        help_text="The failures that move a call on to the next deployment.",
    )
    mid_stream_recovery = models.BooleanField(
        default=False, help_text="Continue a stream that breaks after its first byte from another deployment."
    )
    ensemble = models.CharField(
        max_length=10, choices=[(name, name) for name in ENSEMBLES], blank=True, help_text="Leave empty for none."
    )
    timeout = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1)],
        help_text="Seconds for the whole call, retries included.",
    )
    first_byte_timeout = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.1)], help_text="Seconds to wait for a first byte."
    )
    stall_timeout = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.1)], help_text="Seconds of silence that end a stream."
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["public_id"]
        verbose_name = "public model"

    def __str__(self) -> str:
        return self.public_id

    def clean(self) -> None:
        fallbacks = self.fallbacks if isinstance(self.fallbacks, list) else []
        if self.public_id in fallbacks:
            raise ValidationError({"fallbacks": "A model cannot be its own fallback."})
        known = set(PublicModel.objects.filter(public_id__in=fallbacks).values_list("public_id", flat=True))
        unknown = [name for name in fallbacks if name not in known]
        if unknown:
            raise ValidationError({"fallbacks": f"Unknown models: {', '.join(unknown)}."})


class ModelRoute(models.Model):
    """A deployment: one provider's upstream model serving a public model, with its place in the order."""

    model = models.ForeignKey(PublicModel, on_delete=models.CASCADE, related_name="deployments")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="routes")
    upstream_model = models.CharField(max_length=200, help_text="The model name the provider expects.")
    priority = models.IntegerField(default=0, help_text="Lower is tried first.")
    weight = models.PositiveIntegerField(
        default=1, help_text="Share of traffic under the weighted strategy; 0 only when nothing else is left."
    )
    max_requests_per_minute = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    max_tokens_per_minute = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    max_in_flight = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Requests in flight at once."
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["priority", "id"]
        verbose_name = "deployment"

    def __str__(self) -> str:
        return f"{self.public_id}: {self.name}"

    @property
    def public_id(self) -> str:
        return self.model.public_id

    @property
    def name(self) -> str:
        """How headers, logs and the ledger name a deployment (RouteInfo.name)."""
        return f"{self.provider.name}/{self.upstream_model}"
