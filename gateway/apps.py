from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_delete, post_save


class GatewayConfig(AppConfig):
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
