"""The operator's console for billing, one module per subject:

    prices.py   tenant prices and provider costs, also on the public model and deployment pages
    limits.py   rate limits, budgets and budget alerts, checked by the rules the management API uses
    ledger.py   the usage ledger: read-only, by tenant or key, with the totals of the rows listed
    owners.py   the tenant and key pages again, with their ledger, usage this month, limits and budgets

Importing the package registers them all, as the admin's autodiscovery expects.
Every amount on these pages is written by `billing.money.format_money`.
"""

from billing.admin import ledger, limits, owners
from billing.admin.prices import CostedModelRouteAdmin, PricedPublicModelAdmin

__all__ = ["CostedModelRouteAdmin", "PricedPublicModelAdmin", "ledger", "limits", "owners"]
