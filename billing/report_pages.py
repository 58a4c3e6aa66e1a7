"""What the report pages show: the report values of billing/report_values.py laid out for a page, with charts.

    ReportPeriodForm        a tenant report's ?from=&to= (UTC days, both included; the month so far by default)
    tenant_report_page()    a tenant's report, as the console and the tenant portal both show it
    dashboard_panels()      the console dashboard's routing, performance and cost panels

No query here: the selectors of billing/reports.py read, this arranges. The
console and the portal render the same partial from the same page, so they
print the same numbers the same way. Each chart is drawn from exactly the
figures of the table printed with it, capped at its largest entries where a
table can run long; the table lists every one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.utils.safestring import SafeString

from billing.charts import PALETTE, Bar, Segment, Stack, bar_chart, stacked_bars
from billing.money import format_money
from billing.report_values import (
    BudgetUse,
    Dashboard,
    DayModelUsage,
    KeyUsage,
    ModelShares,
    Performance,
    Spend,
    TenantReport,
)
from billing.reports import WINDOWS
from providers.models import ModelRoute

DEFAULT_WINDOW = "24h"
MAX_DAYS = 366  # a report's longest period: a year of daily columns still draws
EXPORT_GROUPING = ("day", "model", "key")  # the export beside a report holds its own breakdown
CHART_ENTRIES = 15  # bars in a chart whose table may run longer
OTHER_MODELS = "other models"


class ReportPeriodForm(forms.Form):
    """A report's first and last UTC day; either left out means the month so far (`today`'s)."""

    def __init__(self, data: Mapping[str, Any], *, today: date) -> None:
        super().__init__(
            {"from": data.get("from") or today.replace(day=1).isoformat(), "to": data.get("to") or today.isoformat()}
        )
        # `from` is a Python keyword, so the fields are set here rather than declared as attributes.
        for name, label in (("from", "From"), ("to", "To (included)")):
            self.fields[name] = forms.DateField(
                label=label, widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
            )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("from"), cleaned.get("to")
        if start is not None and end is not None:
            if end < start:
                raise forms.ValidationError("The last day comes on or after the first.")
            if (end - start).days >= MAX_DAYS:
                raise forms.ValidationError(f"A report covers at most {MAX_DAYS} days.")
        return cleaned

    def period(self) -> tuple[date, date]:
        return self.cleaned_data["from"], self.cleaned_data["to"]


@dataclass(frozen=True)
class BudgetLine:
    use: BudgetUse
    fill: str  # the <meter>'s value: the share used, a full bar at most
    soft: str  # where the bar turns amber: the soft limit's share


def _budget_lines(uses: Iterable[BudgetUse]) -> tuple[BudgetLine, ...]:
    return tuple(
        BudgetLine(use=use, fill=f"{min(use.used, 1.0):.4f}", soft=f"{use.soft_limit_percent / 100:.4f}")
        for use in uses
    )


# --- A tenant's report ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DayTotal:
    day: date
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class TenantReportPage:
    report: TenantReport
    days: tuple[DayTotal, ...]  # every day of the period, quiet ones too
    budgets: tuple[BudgetLine, ...]  # the month's statement's
    spend_chart: SafeString
    tokens_chart: SafeString
    keys_chart: SafeString
    errors_chart: SafeString
    csv_url: str
    json_url: str


def _key_label(key: KeyUsage) -> str:
    if key.name:
        return key.name
    return f"{key.prefix}… (deleted)" if key.prefix else "no key"


def tenant_report_page(report: TenantReport, *, export_url: str) -> TenantReportPage:
    """`report` laid out for its page; `export_url` is its export's address and query, less the format."""
    days = _day_totals(report)
    series, own = _model_series(report)
    return TenantReportPage(
        report=report,
        days=days,
        budgets=_budget_lines(report.statement.budgets),
        spend_chart=stacked_bars(
            _spend_stacks(report, days, series, own), title="Spend per day, by model", series=series
        ),
        tokens_chart=stacked_bars(
            _token_stacks(report, days, series, own),
            title="Tokens per day, by model (prompt and completion)",
            series=series,
        ),
        keys_chart=bar_chart(
            [Bar(_key_label(key), float(key.totals.cost), format_money(key.totals.cost)) for key in report.keys][
                :CHART_ENTRIES
            ],
            title="Spend per API key",
        ),
        errors_chart=bar_chart(
            [Bar(error.error_class, error.count, f"{error.count:,}") for error in report.errors],
            title="Failed requests by error class",
            empty="No failed requests in this period.",
        ),
        csv_url=f"{export_url}&format=csv",
        json_url=f"{export_url}&format=json",
    )


def _day_label(day: date) -> str:
    return day.strftime("%m-%d")


def _day_totals(report: TenantReport) -> tuple[DayTotal, ...]:
    by_day: dict[date, list[DayModelUsage]] = defaultdict(list)
    for line in report.days:
        by_day[line.day].append(line)
    span = (report.end - report.start).days + 1
    days = (report.start + timedelta(days=offset) for offset in range(span))
    return tuple(
        DayTotal(
            day=day,
            requests=sum(line.requests for line in by_day[day]),
            prompt_tokens=sum(line.prompt_tokens for line in by_day[day]),
            completion_tokens=sum(line.completion_tokens for line in by_day[day]),
            cost=sum((line.cost for line in by_day[day]), Decimal(0)),
        )
        for day in days
    )


def _model_series(report: TenantReport) -> tuple[list[str], set[str]]:
    """The charts' series, costliest model first (then most tokens): each of the first a colour of its own, the
    rest together as OTHER_MODELS. Both daily charts use it, so a model has the same colour in each."""
    cost_of: dict[str, Decimal] = defaultdict(Decimal)
    tokens_of: dict[str, int] = defaultdict(int)
    for line in report.days:
        cost_of[line.model] += line.cost
        tokens_of[line.model] += line.prompt_tokens + line.completion_tokens
    ranked = sorted(cost_of, key=lambda model: (-cost_of[model], -tokens_of[model], model))
    own = set(ranked[: len(PALETTE) - 1]) if len(ranked) > len(PALETTE) else set(ranked)
    series = [model for model in ranked if model in own] + ([OTHER_MODELS] if len(own) < len(ranked) else [])
    return series, own


def _daily_stacks(
    report: TenantReport,
    days: Sequence[DayTotal],
    series: Sequence[str],
    own: set[str],
    value: Callable[[DayModelUsage | DayTotal], Any],
    shown: Callable[[Any], str],
) -> list[Stack]:
    """A column a day of each model's `value` (`series` and `own` from _model_series), printed by `shown`; the
    column's total is the day's own."""
    per_day: dict[date, dict[str, Any]] = defaultdict(dict)
    for line in report.days:
        named = per_day[line.day]
        name = line.model if line.model in own else OTHER_MODELS
        named[name] = named[name] + value(line) if name in named else value(line)  # Decimal or int, as given
    return [
        Stack(
            label=_day_label(day.day),
            segments=tuple(
                Segment(name, float(amount), shown(amount)) for name in series if (amount := per_day[day.day].get(name))
            ),
            shown=shown(value(day)),
        )
        for day in days
    ]


def _spend_stacks(report: TenantReport, days: Sequence[DayTotal], series: Sequence[str], own: set[str]) -> list[Stack]:
    return _daily_stacks(report, days, series, own, lambda row: row.cost, format_money)


def _token_stacks(report: TenantReport, days: Sequence[DayTotal], series: Sequence[str], own: set[str]) -> list[Stack]:
    return _daily_stacks(
        report, days, series, own, lambda row: row.prompt_tokens + row.completion_tokens, lambda n: f"{n:,} tokens"
    )


# --- The operators' dashboard ---------------------------------------------------------------------


@dataclass(frozen=True)
class ShareLine:
    """A deployment of a public model, as configured now (if it still is), and what it served in the window."""

    deployment: str  # provider/upstream model
    provider: str
    priority: int | None  # None: no longer configured (deleted since)
    weight: int | None
    active: bool | None
    requests: int
    share: float


@dataclass(frozen=True)
class RoutingLine:
    model: str
    strategy: str  # "" for a model no longer configured
    requests: int  # that reached a deployment
    deployments: tuple[ShareLine, ...]
    chart: SafeString


@dataclass(frozen=True)
class PerformanceTable:
    heading: str
    lines: tuple[Performance, ...]
    chart: SafeString  # p95 latency


@dataclass(frozen=True)
class SpendTable:
    heading: str
    lines: tuple[Spend, ...]
    chart: SafeString
    per_tenant: bool  # its lines link to the tenants' reports


@dataclass(frozen=True)
class DashboardPanels:
    board: Dashboard
    windows: tuple[str, ...]
    routing: tuple[RoutingLine, ...]
    performance: tuple[PerformanceTable, ...]  # per provider, per public model
    spend: tuple[SpendTable, ...]  # per tenant, provider, public model
    budgets: tuple[BudgetLine, ...]


def dashboard_panels(board: Dashboard, *, deployments: Sequence[ModelRoute]) -> DashboardPanels:
    """`board` laid out for the dashboard; `deployments` (with their model and provider) give each public model's
    strategy and the deployments it has now, so one that served nothing in the window is listed too."""
    return DashboardPanels(
        board=board,
        windows=tuple(WINDOWS),
        routing=_routing(board.shares, deployments),
        performance=(
            _performance("Per provider", board.providers),
            _performance("Per public model", board.models),
        ),
        spend=(
            _spend("Per tenant", board.spend_by_tenant, per_tenant=True),
            _spend("Per provider", board.spend_by_provider),
            _spend("Per public model", board.spend_by_model),
        ),
        budgets=_budget_lines(board.budgets),
    )


def _performance(heading: str, lines: tuple[Performance, ...]) -> PerformanceTable:
    measured = [line for line in lines if line.latency_p95_ms is not None]
    chart = bar_chart(
        [Bar(line.name, line.latency_p95_ms or 0.0, f"{line.latency_p95_ms:,.0f} ms") for line in measured],
        title=f"p95 latency, {heading.lower()}",
        empty="No successful requests in this window.",
    )
    return PerformanceTable(heading=heading, lines=lines, chart=chart)


def _spend(heading: str, lines: tuple[Spend, ...], *, per_tenant: bool = False) -> SpendTable:
    chart = bar_chart(
        [Bar(line.name, float(line.cost), format_money(line.cost)) for line in lines[:CHART_ENTRIES]],
        title=f"Spend, {heading.lower()}",
        empty="No spend in this window.",
    )
    return SpendTable(heading=heading, lines=lines, chart=chart, per_tenant=per_tenant)


def _routing(shares: Sequence[ModelShares], deployments: Sequence[ModelRoute]) -> tuple[RoutingLine, ...]:
    configured: dict[str, list[ModelRoute]] = defaultdict(list)
    strategies: dict[str, str] = {}
    for deployment in deployments:
        configured[deployment.model.public_id].append(deployment)
        strategies[deployment.model.public_id] = deployment.model.strategy
    served = {line.model: line for line in shares}
    lines = []
    for model in sorted(configured.keys() | served.keys()):
        traffic = served.get(model)
        by_id = {share.deployment_id: share for share in traffic.deployments} if traffic else {}
        rows = []
        for deployment in sorted(configured[model], key=lambda d: (d.priority, d.pk)):
            share = by_id.pop(deployment.pk, None)
            rows.append(
                ShareLine(
                    deployment=deployment.name,
                    provider=deployment.provider.name,
                    priority=deployment.priority,
                    weight=deployment.weight,
                    active=deployment.active,
                    requests=share.requests if share else 0,
                    share=share.share if share else 0.0,
                )
            )
        rows += [
            ShareLine(share.deployment, share.provider, None, None, None, share.requests, share.share)
            for share in by_id.values()
        ]
        requests = traffic.requests if traffic else 0
        lines.append(
            RoutingLine(
                model=model,
                strategy=strategies.get(model, ""),
                requests=requests,
                deployments=tuple(rows),
                chart=bar_chart(
                    [Bar(row.deployment, row.share, f"{row.share:.1%}") for row in rows] if requests else [],
                    title=f"Share of {model}'s requests per deployment",
                    empty="No traffic in this window.",
                ),
            )
        )
    return tuple(lines)
