"""Both APIs fuzzed from their own OpenAPI documents against a real server.

Schemathesis reads the document each API publishes (Ninja's for `/v1/`,
drf-spectacular's for `/api/`), generates requests from it, valid and invalid
(bodies, parameters, headers, content types), sends them to a Portico under
uvicorn and checks every answer:

- no 5xx, anywhere;
- on `/v1/`, every answer that is not a 2xx is OpenAI's error object exactly
  (`{"error": {"message": str, "type": str, "param": str|null, "code": str|null}}`);
- on `/api/`, every answer is JSON.

Generated requests name the test's routes often enough to be served: chat goes
to the mock provider, the other endpoints to the fake OpenAI upstream.

The run is bounded and reproducible: Hypothesis is derandomised and
Schemathesis seeded (the same requests every run), with at most V1_EXAMPLES
generated requests per `/v1/` operation and API_EXAMPLES per `/api/`
operation, plus Schemathesis's coverage cases (boundary and type-violating
values of each field, other methods, missing auth). That is about 1,800
requests, which take about 65 s on a 2-core machine.

The schemas are read when the module is collected, before any server starts,
so the routes that requests name have fixed ids (ECHO_MODEL, FULL_MODEL).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.core.transport import Response
from schemathesis.generation.case import Case

from billing.models import Budget, BudgetAlert, RateLimit
from billing.tests.factories import make_usage, make_user, token_headers
from gateway.api import api
from providers.tests.factories import make_provider, make_route
from tenants.tests.factories import IssuedKey, make_key, make_tenant
from tests.fakes.openai_upstream import FakeUpstream
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

V1_EXAMPLES = 60
API_EXAMPLES = 30
# Fixed, with Hypothesis derandomised: every run sends the same requests, so a failure reproduces.
SEED = 20240611
# Generous for one loopback request; what it bounds is a server that hangs, not a slow one.
REQUEST_TIMEOUT = 10.0
# Each operation's examples are one Hypothesis test: no per-example deadline, and no health check
# for what is expected of a fuzzer here (slow data generation, large bodies, filtered examples).
BOUNDED = settings(
    max_examples=V1_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def openai_error_problem(body: Any) -> str | None:
    """What keeps `body` from being OpenAI's error object, or None if it is one."""
    if not isinstance(body, dict) or set(body) != {"error"}:
        return "the body is not a JSON object holding only `error`"
    error = body["error"]
    if not isinstance(error, dict) or set(error) != {"message", "type", "param", "code"}:
        return "`error` does not hold exactly message, type, param and code"
    if not isinstance(error["message"], str) or not isinstance(error["type"], str):
        return "`error.message` and `error.type` must be strings"
    for name in ("param", "code"):
        if error[name] is not None and not isinstance(error[name], str):
            return f"`error.{name}` must be a string or null"
    return None


def openai_error_shape(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    if 200 <= response.status_code < 300:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    problem = openai_error_problem(body)
    assert problem is None, f"{response.status_code} not in OpenAI's error shape: {problem}"
    return None


def json_answer(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    if response.status_code == 204:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    if case.path == "/api/usage/report/" and response.status_code == 200 and content_type.startswith("text/csv"):
        return None  # the usage export, asked for as CSV
    assert content_type.startswith("application/json"), f"{response.status_code} is {content_type!r}, not JSON"
    return None


def _often(schema: dict[str, Any], *values: Any) -> dict[str, Any]:
    """`schema`, with `values` offered as explicit choices so that generated requests reach real rows too."""
    return {"anyOf": [{"enum": list(values)}, schema]}


# --- /v1/ ---

# The public ids of the test's two routes, fixed because the schema is read when the module is collected.
ECHO_MODEL = "fuzz-echo"
FULL_MODEL = "fuzz-full"


def v1_document() -> dict[str, Any]:
    """The document Portico serves at /v1/openapi.json, with the test's models among the choices for `model`."""
    raw = copy.deepcopy(api.get_openapi_schema())
    for path in raw["paths"].values():
        for operation in path.values():
            for parameter in operation.get("parameters", ()):
                if parameter["name"] == "model":
                    parameter["schema"] = _often(parameter["schema"], ECHO_MODEL, FULL_MODEL)
            for content in operation.get("requestBody", {}).get("content", {}).values():
                properties = content["schema"]["properties"]
                if "model" in properties:  # files and batches name no model
                    properties["model"] = _often(properties["model"], ECHO_MODEL, FULL_MODEL)
    return raw


v1 = schemathesis.openapi.from_dict(v1_document())
v1.config.seed = SEED


@pytest.fixture
def v1_headers(portico: PorticoServer, upstream: FakeUpstream, key: IssuedKey, settle: Settle) -> dict[str, str]:
    """A tenant's key, and the routes its requests name: chat to the mock provider, the rest to the fake upstream."""
    make_route(provider=make_provider(kind="mock", name=ECHO_MODEL), public_id=ECHO_MODEL, upstream_model="mock-echo")
    upstream_provider = make_provider(kind="openai", name=FULL_MODEL, base_url=upstream.base_url, credential="sk-fuzz")
    capabilities = ("vision", "embeddings", "moderation", "images", "transcription")
    make_route(provider=upstream_provider, public_id=FULL_MODEL, **{f"supports_{name}": True for name in capabilities})
    settle()
    return {"Authorization": f"Bearer {key.plaintext}"}


@v1.parametrize()
@BOUNDED
def test_the_openai_surface_answers_every_request_without_a_server_error_and_in_openai_shape(
    case: Case, portico: PorticoServer, v1_headers: dict[str, str]
) -> None:
    response = case.call(base_url=portico.base_url, headers=v1_headers, timeout=REQUEST_TIMEOUT)
    case.validate_response(response, checks=[not_a_server_error, openai_error_shape])


# --- /api/ ---

# drf-spectacular's document, as served at /api/schema/ (generated here: the servers have not started yet).
management = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
management.config.seed = SEED


@pytest.fixture
def management_headers(committed_db: None, tag: str) -> Iterator[dict[str, str]]:
    """The headers of an operator's management API request."""
    user = make_user(username=f"operator-{tag}", staff=True)
    yield token_headers(user)
    user.delete()


@pytest.fixture
def row_ids(committed_db: None, tag: str, settle: Settle) -> list[int]:
    """Rows of every kind the management API serves, so that generated ids sometimes name one."""
    tenant = make_tenant(slug=f"fuzz-{tag}")
    issued = make_key(tenant=tenant)
    rate_limit = RateLimit.objects.create(tenant=tenant, requests_per_minute=60)
    budget = Budget.objects.create(tenant=tenant, amount="10")
    alert = BudgetAlert.objects.create(budget=budget, period="all", level="soft", spent="8")
    usage = make_usage(api_key=issued.api_key)
    settle()
    return sorted({tenant.pk, issued.api_key.pk, rate_limit.pk, budget.pk, alert.pk, usage.pk})


def _fuzz_management_api(
    case: Case, data: st.DataObject, portico: PorticoServer, headers: dict[str, str], row_ids: list[int]
) -> None:
    if "id" in (case.path_parameters or {}) and data.draw(st.booleans(), label="an existing row"):
        case.path_parameters["id"] = data.draw(st.sampled_from(row_ids), label="id")
    response = case.call(base_url=portico.base_url, headers=headers, timeout=REQUEST_TIMEOUT)
    case.validate_response(response, checks=[not_a_server_error, json_answer])


@management.parametrize()
@management.given(data=st.data())
@settings(BOUNDED, max_examples=API_EXAMPLES)
def test_the_management_api_answers_every_request_without_a_server_error_and_in_json(
    case: Case, data: st.DataObject, portico: PorticoServer, management_headers: dict[str, str], row_ids: list[int]
) -> None:
    _fuzz_management_api(case, data, portico, management_headers, row_ids)


@pytest.mark.parametrize(
    "path", ["/api/budget-alerts/", "/api/tenants/", "/api/keys/", "/api/usage/", "/api/rate-limits/", "/api/budgets/"]
)
@pytest.mark.usefixtures("row_ids")  # an empty list is answered without a query
def test_a_list_answers_a_limit_past_the_database_range_without_a_server_error(
    portico: PorticoServer, management_headers: dict[str, str], path: str
) -> None:
    answer = portico.http.get(path, params={"limit": 2**63}, headers=management_headers)

    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert len(answer.json()["results"]) >= 1


@pytest.mark.usefixtures("row_ids")
def test_a_list_answers_an_offset_past_the_database_range_with_an_empty_page(
    portico: PorticoServer, management_headers: dict[str, str]
) -> None:
    answer = portico.http.get("/api/tenants/", params={"offset": 2**64, "limit": 2**63}, headers=management_headers)

    assert answer.status_code == 200, answer.text
    assert answer.json()["results"] == []
