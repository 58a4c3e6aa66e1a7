"""Tenant prices per public model and provider costs per deployment, with their history."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin

from billing.models import DeploymentPrice, PerMillion, Price
from billing.money import format_money
from providers.admin import ModelRouteAdmin, PublicModelAdmin
from providers.models import ModelRoute, Provider, PublicModel

_PRICE_FIELDS = ["effective_from", "input_per_million", "cached_input_per_million", "output_per_million"]


def _price_column(field: str, label: str) -> Callable[[admin.ModelAdmin, PerMillion], str]:
    @admin.display(description=label, ordering=field)
    def column(model_admin: admin.ModelAdmin, price: PerMillion) -> str:
        amount = getattr(price, field)
        return "as input" if amount is None else format_money(amount, exact=True)

    return column


class PriceColumns(admin.ModelAdmin):
    input_price = _price_column("input_per_million", "input / 1M tokens")
    cached_input_price = _price_column("cached_input_per_million", "cached input / 1M tokens")
    output_price = _price_column("output_per_million", "output / 1M tokens")


class PriceInline(admin.TabularInline):
    model = Price
    fields = _PRICE_FIELDS
    extra = 0
    verbose_name_plural = "tenant prices (USD per 1M tokens; the latest that has started is in effect)"


class DeploymentPriceInline(admin.TabularInline):
    model = DeploymentPrice
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
