"""Tenant prices per public model and provider costs per deployment, with their history.

Every write goes through the services the management API uses
(billing.services.price_add, deployment_price_add; billing.prices for changes
and withdrawals), so a price already in effect is refused here as there, in
the same words: on its own page, on its list's bulk delete, and in the
history inlines of a public model's and a deployment's pages.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse

from billing.models import DeploymentPrice, PerMillion, Price
from billing.money import format_money
from billing.prices import (
    CHANGEABLE,
    PriceInEffect,
    deployment_price_withdraw,
    price_change,
    price_check_not_started,
    price_withdraw,
)
from billing.services import deployment_price_add, price_add
from providers.admin import ModelRouteAdmin, PublicModelAdmin
from providers.models import ModelRoute, Provider, PublicModel

_PRICE_FIELDS = ["effective_from", "input_per_million", "cached_input_per_million", "output_per_million"]


def _price_column(field: str, label: str) -> Callable[[admin.ModelAdmin, PerMillion], str]:
    @admin.display(description=label, ordering=field)
    def column(model_admin: admin.ModelAdmin, price: PerMillion) -> str:
        amount = getattr(price, field)
        return "as input" if amount is None else format_money(amount, exact=True)

    return column


def _refusal(row: Price | DeploymentPrice) -> str | None:
    """What the API says of changing or withdrawing `row`; None if it may be."""
    try:
        price_check_not_started(row=row)
    except PriceInEffect as exc:
        return str(exc)
    return None


def _add(row: Price | DeploymentPrice) -> Price | DeploymentPrice:
    """Add the unsaved `row` through the API's service."""
    values = {name: getattr(row, name) for name in CHANGEABLE}
    if isinstance(row, Price):
        return price_add(model=row.route, **values)
    return deployment_price_add(deployment=row.deployment, **values)


def _withdraw(row: Price | DeploymentPrice) -> None:
    if isinstance(row, Price):
        price_withdraw(price=row)
    else:
        deployment_price_withdraw(cost=row)


def _changed(form: forms.ModelForm) -> dict[str, Any]:
    """The price fields the form really changes.

    The page shows a start to the second, so a start posted back unchanged has lost its microseconds: that
    is no change.
    """
    changed = {}
    for name in form.changed_data:
        if name not in CHANGEABLE:
            continue
        value, before = form.cleaned_data.get(name), form.initial.get(name)
        if isinstance(value, datetime) and isinstance(before, datetime) and value.microsecond == 0:
            before = before.replace(microsecond=0)
        if value != before:
            changed[name] = value
    return changed


class PriceForm(forms.ModelForm):
    """Refuses, as the API does, any change to a price already in effect."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.instance.pk is not None and _changed(self):
            refusal = _refusal(self.instance)
            if refusal:
                raise forms.ValidationError(refusal)
        return cleaned


def _marked_deleted(form: forms.BaseForm) -> bool:
    return bool(getattr(form, "cleaned_data", {}).get("DELETE", False))


class PriceHistoryFormSet(forms.BaseInlineFormSet):
    """A history inline: rows in effect may be neither changed nor deleted (the API's words say why)."""

    def clean(self) -> None:
        super().clean()
        # The formset's own errors: those of a form marked for deletion would be ignored.
        refusals = [
            refusal
            for form in self.initial_forms
            if form.instance.pk is not None and (_changed(form) or _marked_deleted(form))
            for refusal in [_refusal(form.instance)]
            if refusal
        ]
        if refusals:
            raise forms.ValidationError(refusals)

    def save(self, commit: bool = True) -> list[Model]:
        """Write through the services; what the admin's change message reads is set as Django's save sets it."""
        assert commit, "the console saves a price history at once"
        self.new_objects, self.changed_objects, self.deleted_objects = [], [], []
        for form in self.initial_forms:
            if _marked_deleted(form):
                _withdraw(form.instance)
                self.deleted_objects.append(form.instance)
            elif changed := _changed(form):
                price_change(row=form.instance, fields=changed)
                self.changed_objects.append((form.instance, list(changed)))
        for form in self.extra_forms:
            if form.has_changed() and not _marked_deleted(form):
                row = form.save(commit=False)  # the form's values on an unsaved row, with its owner set
                self.new_objects.append(_add(row))
        return [*self.new_objects, *(row for row, _fields in self.changed_objects)]


class PriceColumns(admin.ModelAdmin):
    form = PriceForm
    input_price = _price_column("input_per_million", "input / 1M tokens")
    cached_input_price = _price_column("cached_input_per_million", "cached input / 1M tokens")
    output_price = _price_column("output_per_million", "output / 1M tokens")

    def save_model(self, request: HttpRequest, obj: Any, form: forms.ModelForm, change: bool) -> None:
        if change:
            changed = _changed(form)
            if changed:
                price_change(row=obj, fields=changed)
            return
        added = _add(obj)
        # The form's instance becomes the row added, for the redirect that follows.
        obj.pk, obj._state.adding = added.pk, False

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None) -> Any:
        row = self.get_object(request, unquote(object_id))
        refusal = _refusal(row) if row is not None else None
        if row is not None and refusal:
            self.message_user(request, refusal, messages.ERROR)
            change_url = f"admin:{self.opts.app_label}_{self.opts.model_name}_change"
            return HttpResponseRedirect(reverse(change_url, args=[row.pk]))
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        _withdraw(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        # The bulk action withdraws what has not started and names what it kept.
        for row in queryset:
            refusal = _refusal(row)
            if refusal:
                self.message_user(request, f"{row}: {refusal}", messages.ERROR)
            else:
                _withdraw(row)


class PriceInline(admin.TabularInline):
    model = Price
    formset = PriceHistoryFormSet
    fields = _PRICE_FIELDS
    extra = 0
    verbose_name_plural = "tenant prices (USD per 1M tokens; the latest that has started is in effect)"


class DeploymentPriceInline(admin.TabularInline):
    model = DeploymentPrice
    formset = PriceHistoryFormSet
    fields = _PRICE_FIELDS
    extra = 0
    verbose_name_plural = "provider costs (USD per 1M tokens; the latest that has started is in effect)"


# providers sits below billing in Portico's layers and may not import it, so billing registers
# the public model and deployment pages again, as subclasses that add the price history.
admin.site.unregister(PublicModel)
admin.site.unregister(ModelRoute)


@admin.register(PublicModel)
class PricedPublicModelAdmin(PublicModelAdmin):
    inlines = [*PublicModelAdmin.inlines, PriceInline]


@admin.register(ModelRoute)
class CostedModelRouteAdmin(ModelRouteAdmin):
    inlines = [*ModelRouteAdmin.inlines, DeploymentPriceInline]


@admin.register(Price)
class PriceAdmin(PriceColumns):
    list_display = ["route", "effective_from", "input_price", "cached_input_price", "output_price"]
    list_filter = [("route__deployments__provider", admin.RelatedOnlyFieldListFilter), "effective_from"]
    list_select_related = ["route"]
    search_fields = ["route__public_id"]
    autocomplete_fields = ["route"]


@admin.register(DeploymentPrice)
class DeploymentPriceAdmin(PriceColumns):
    list_display = ["deployment", "provider", "effective_from", "input_price", "cached_input_price", "output_price"]
    list_filter = ["deployment__provider", "effective_from"]
    list_select_related = ["deployment__model", "deployment__provider"]
    search_fields = ["deployment__model__public_id", "deployment__upstream_model", "deployment__provider__name"]
    autocomplete_fields = ["deployment"]

    @admin.display(description="provider", ordering="deployment__provider__name")
    def provider(self, price: DeploymentPrice) -> Provider:
        return price.deployment.provider
