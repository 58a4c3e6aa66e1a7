from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.db.models.signals import m2m_changed, post_delete, post_save


class PorticoAdminConfig(admin_apps.AdminConfig):
    """The admin, with Portico's console (gateway/console.py) as its default site."""

    default = False  # listed by its path in INSTALLED_APPS; "gateway" itself is GatewayConfig
    default_site = "gateway.console.PorticoAdminSite"


class GatewayConfig(AppConfig):
    default = True
    name = "gateway"

    def ready(self) -> None:
        from gateway.invalidation import on_change

        watched = (
            "tenants.Tenant",
            "tenants.ApiKey",
            "providers.Provider",
            "providers.PublicModel",
            "providers.ModelRoute",
            "billing.Price",
            "billing.DeploymentPrice",
            "billing.RateLimit",
            "billing.Budget",
            "caching.CachePolicy",
        )
        for label in watched:
            model = self.apps.get_model(label)
            post_save.connect(on_change, sender=model, dispatch_uid=f"snapshot-save-{label}")
            post_delete.connect(on_change, sender=model, dispatch_uid=f"snapshot-delete-{label}")
        for label in ("tenants.Tenant", "tenants.ApiKey"):
            through = self.apps.get_model(label).allowed_models.through
            m2m_changed.connect(on_change, sender=through, dispatch_uid=f"snapshot-m2m-{label}")

        # The admin (listed first) has loaded every app's admin module by now, billing's re-registrations too.
        from gateway.admin import show_breakers_on_deployments

        show_breakers_on_deployments()
