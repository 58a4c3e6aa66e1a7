"""Alert channels and deliveries in the console.

A webhook's signing secret is write-only, as a provider's credential is: the
form takes a new one, and no page renders the stored value. Deliveries are
written by Portico alone and are read-only; failed ones can be sent again.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from notifications.models import AlertChannel, AlertDelivery, AlertEvent
from notifications.services import (
    SECRET_MIN_LENGTH,
    alert_channel_problems,
    alert_channel_save,
    alert_deliveries_resend,
)


class AddressesField(forms.CharField):
    """Email addresses, one a line or separated by commas; stored as a list."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]  # a list, not a str
        text = super().to_python(value) or ""
        return [address.strip() for address in text.replace(",", "\n").splitlines() if address.strip()]


class AlertChannelForm(forms.ModelForm):
    emails = AddressesField(required=False, help_text="Email: one address a line.")
    # Declared to choose the scheme a bare host gets (Django 6 makes https the default; say so now).
    url = forms.URLField(
        required=False,
        max_length=2000,
        assume_scheme="https",
        help_text=AlertChannel._meta.get_field("url").help_text,
    )
    events = forms.MultipleChoiceField(choices=AlertEvent.choices, widget=forms.CheckboxSelectMultiple)
    secret = forms.CharField(
        required=False,
        min_length=SECRET_MIN_LENGTH,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Webhook: the key of the x-portico-signature HMAC (docs/alerts.md), at least "
        f"{SECRET_MIN_LENGTH} characters. Stored encrypted and never shown again; leave blank to keep the current one.",
    )

    class Meta:
        model = AlertChannel
        fields = ["name", "tenant", "kind", "emails", "url", "events", "active"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        tenant = cleaned.get("tenant")
        problems = alert_channel_problems(
            kind=cleaned.get("kind", ""),
            emails=cleaned.get("emails") or [],
            url=cleaned.get("url") or "",
            events=cleaned.get("events") or [],
            tenant_id=tenant.pk if tenant is not None else None,
            has_secret=bool(cleaned.get("secret")) or self.instance.has_secret,
        )
        for field, problem in problems.items():
            if field in self.fields and field not in self.errors:
                self.add_error(field, problem)
        return cleaned


@admin.register(AlertChannel)
class AlertChannelAdmin(admin.ModelAdmin):
    form = AlertChannelForm
    list_display = ["name", "owner", "kind", "target", "events_list", "active"]
    list_filter = ["kind", "active", ("tenant", admin.EmptyFieldListFilter)]
    list_select_related = ["tenant"]
    search_fields = ["name", "tenant__name", "url"]
    autocomplete_fields = ["tenant"]
    fields = ["name", "tenant", "kind", "emails", "url", "secret", "events", "active"]

    @admin.display(description="owner", ordering="tenant__name")
    def owner(self, channel: AlertChannel) -> str:
        return channel.tenant.name if channel.tenant is not None else "operators"

    @admin.display(description="to")
    def target(self, channel: AlertChannel) -> str:
        return ", ".join(channel.emails) if channel.kind == AlertChannel.Kind.EMAIL else channel.url

    @admin.display(description="events")
    def events_list(self, channel: AlertChannel) -> str:
        return ", ".join(channel.events)

    def save_model(self, request: HttpRequest, obj: AlertChannel, form: forms.ModelForm, change: bool) -> None:
        alert_channel_save(channel=obj, secret=form.cleaned_data.get("secret") or "")


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(admin.ModelAdmin):
    """Written by Portico only; read here, and sent again when failed."""

    list_display = ["created_at", "event", "subject", "channel", "status", "attempts", "sent_at", "last_error"]
    list_filter = ["status", "event", "channel__kind", "channel"]
    list_select_related = ["channel"]
    search_fields = ["subject", "key"]
    date_hierarchy = "created_at"
    actions = ["send_again"]
    show_facets = admin.ShowFacets.ALWAYS  # how many are pending, sent, failed next to each filter

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Send the selected failed deliveries again", permissions=["resend"])
    def send_again(self, request: HttpRequest, queryset: QuerySet[AlertDelivery]) -> None:
        queued = alert_deliveries_resend(deliveries=queryset)
        skipped = queryset.count() - queued
        message = f"{queued} deliver{'y' if queued == 1 else 'ies'} queued to be sent again."
        if skipped:
            message += f" {skipped} not failed, left as they were."
        self.message_user(request, message, messages.SUCCESS if queued else messages.WARNING)

    def has_resend_permission(self, request: HttpRequest) -> bool:
        # Whoever may change channels may have their failed alerts sent again.
        return request.user.has_perm("notifications.change_alertchannel")
