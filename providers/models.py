from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from providers.adapters import ADAPTERS, kind_choices
from providers.adapters.kind_options import InvalidOptions
from providers.model_lists.handles import default_handle_kinds, validate_handle_kinds
from providers.options import ENSEMBLES, RETRY_CLASSES, STRATEGIES, default_retry_on

# The kind a provider is when none is given: the admin's, the management API's and the model's one default.
DEFAULT_KIND = "openai"
# RFC 9110's token: what a header name may be made of.
HEADER_NAME = RegexValidator(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", "Enter a valid HTTP header name.")


class Provider(models.Model):
    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=32, choices=kind_choices, default=DEFAULT_KIND)
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
    exact_shapes = models.BooleanField(
        default=False, help_text="Tick for servers whose chat answers already match OpenAI's exactly (OpenAI itself)."
    )
    # Settings only one kind has, validated by that kind's adapter (providers/adapters/kind_options.py).
    options = models.JSONField(
        default=dict,
        blank=True,
        help_text='Settings of this kind of provider, as JSON: {"serves_responses": true} for an OpenAI server '
        "with its own /v1/responses. Unknown keys are refused.",
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

    def clean(self) -> None:
        if self.kind not in ADAPTERS:
            return  # the kind's own choices check says so
        try:
            self.options = ADAPTERS[self.kind].clean_options(self.options)
        except InvalidOptions as exc:
            raise ValidationError({"options": str(exc)}) from None


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


# --- Model-list sources (providers/model_lists/) ----------------------------------------------------------------


class RefreshStatus(models.TextChoices):
    OK = "ok", "ok"
    PARTIAL = "partial", "partly applied"  # some entries were refused or in conflict; the others applied
    FAILED = "failed", "failed"  # the list could not be read: nothing changed


class ModelListSource(models.Model):
    """A JSON list of models published elsewhere, applied to the registry every `refresh_interval` seconds."""

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=500, help_text="Where the JSON array of models is read.")
    base_url = models.URLField(
        max_length=500, blank=True, help_text="Handles are relative to this; blank for the origin of the list's URL."
    )
    # Fernet token (providers/credentials.py); sent to the list and to every provider the source makes.
    credential_encrypted = models.TextField(blank=True, editable=False)
    refresh_interval = models.PositiveIntegerField(
        default=300, validators=[MinValueValidator(10)], help_text="Seconds between two reads of the list."
    )
    enabled = models.BooleanField(default=True)
    handle_kinds = models.JSONField(
        default=default_handle_kinds,
        validators=[validate_handle_kinds],
        help_text='Which kind of provider serves a handle, first match wins: [{"prefix": "/openai/", "kind": '
        '"openai"}, {"suffix": "/v1/messages", "kind": "anthropic"}, ...].',
    )
    last_refreshed_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_status = models.CharField(max_length=10, choices=RefreshStatus.choices, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "model-list source"

    def __str__(self) -> str:
        return self.name

    @property
    def has_credential(self) -> bool:
        return bool(self.credential_encrypted)

    @property
    def handle_base_url(self) -> str:
        """What handles are joined onto: the base URL, or the list URL's origin."""
        if self.base_url:
            return self.base_url.rstrip("/")
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"


class ModelListRefresh(models.Model):
    """One read of a source: what changed, and what could not be applied."""

    source = models.ForeignKey(ModelListSource, on_delete=models.CASCADE, related_name="refreshes")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=RefreshStatus.choices)
    error = models.TextField(blank=True, help_text="Why the list could not be read.")
    # [{"entry": 3, "model": "x", "error": "..."}]: refused entries, and models in conflict with hand-made ones.
    entry_errors = models.JSONField(default=list, blank=True)
    # {"added": [...], "changed": [...], "disabled": [...], "reenabled": [...]}: model ids, as the list names them.
    diff = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["source", "-started_at"], name="model_list_refresh_recent")]

    def __str__(self) -> str:
        return f"{self.source} at {self.started_at:%Y-%m-%d %H:%M:%S}: {self.status}"


class ModelListProvider(models.Model):
    """A provider a source made for one base path and kind, found again by them at every refresh."""

    source = models.ForeignKey(ModelListSource, on_delete=models.CASCADE, related_name="providers")
    provider = models.OneToOneField(Provider, on_delete=models.CASCADE, related_name="list_source")
    base_path = models.CharField(max_length=500, help_text="The provider's path under the source's base URL.")
    kind = models.CharField(max_length=32)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "base_path", "kind"], name="one_list_provider_per_base_and_kind")
        ]

    def __str__(self) -> str:
        return f"{self.source}: {self.kind} at {self.base_path}"


class ModelListEntry(models.Model):
    """A model a source lists, or listed: the rows it manages, and what the list last said of it.

    Only rows named here are ever changed by a refresh; the public model's other settings (capabilities,
    routing, deployments an operator added) are left as the operator set them.
    """

    source = models.ForeignKey(ModelListSource, on_delete=models.CASCADE, related_name="entries")
    # The list's id for it, kept apart from the public model's id, which an operator may change.
    model_version = models.CharField(max_length=200)
    model = models.OneToOneField(PublicModel, on_delete=models.CASCADE, related_name="list_entry")
    deployment = models.OneToOneField(
        ModelRoute, null=True, blank=True, on_delete=models.SET_NULL, related_name="list_entry"
    )
    handle = models.CharField(max_length=500)
    model_family = models.CharField(max_length=100, blank=True)
    # The list's prices as last applied: a new price row is added only when the list's own price changes.
    input_per_million = models.DecimalField(max_digits=12, decimal_places=6)
    output_per_million = models.DecimalField(max_digits=12, decimal_places=6)
    listed = models.BooleanField(default=True, help_text="Off once the list stopped naming it: its model is disabled.")
    first_listed_at = models.DateTimeField(default=timezone.now)
    last_listed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "model-list entry"
        verbose_name_plural = "model-list entries"
        constraints = [
            models.UniqueConstraint(fields=["source", "model_version"], name="one_list_entry_per_model_version")
        ]

    def __str__(self) -> str:
        return f"{self.source}: {self.model}"


# --- Discovery and health (providers/discovery.py, providers/probes.py) ----------------------------------------


class DiscoveredModel(models.Model):
    """A model a provider's own model list names. Routes nothing by itself: an operator routes it."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="discovered_models")
    upstream_id = models.CharField(max_length=200)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    gone = models.BooleanField(default=False, help_text="The provider no longer lists it.")

    class Meta:
        ordering = ["provider__name", "upstream_id"]
        constraints = [models.UniqueConstraint(fields=["provider", "upstream_id"], name="one_discovery_per_model")]

    def __str__(self) -> str:
        return f"{self.provider}/{self.upstream_id}"


class DeploymentProbe(models.Model):
    """One active health check of a deployment; the newest few are kept per deployment."""

    deployment = models.ForeignKey(ModelRoute, on_delete=models.CASCADE, related_name="probes")
    probed_at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField()
    latency_ms = models.PositiveIntegerField()
    reason = models.CharField(max_length=60, blank=True, help_text="Portico's name for the failure.")
    detail = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-probed_at", "-id"]
        indexes = [models.Index(fields=["deployment", "-probed_at"], name="deployment_probe_recent")]

    def __str__(self) -> str:
        return f"{self.deployment_id} at {self.probed_at:%Y-%m-%d %H:%M:%S}: {'ok' if self.ok else self.reason}"
