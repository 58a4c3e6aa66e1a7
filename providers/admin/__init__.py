"""The operator's console for the providers app, one module per subject:

    providers.py    providers (write-only secrets, test connection, discover), public models, deployments
    forms.py        their forms, which keep the management API's rules (providers.services)
    model_lists.py  model-list sources and their refreshes
    health.py       discovered models, and the deployments' health checks

Importing the package registers them all, as the admin's autodiscovery expects.
"""

from providers.admin import health, model_lists
from providers.admin.providers import ModelRouteAdmin, ProviderAdmin, PublicModelAdmin

__all__ = ["ModelRouteAdmin", "ProviderAdmin", "PublicModelAdmin", "health", "model_lists"]
