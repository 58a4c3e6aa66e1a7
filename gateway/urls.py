from django.contrib import admin
from django.urls import include, path

from gateway.api import api
from gateway.error_views import invalid_url
from gateway.favicon import favicon
from gateway.health_status import health_status
from gateway.landing import landing
from gateway.observability.views import metrics

urlpatterns = [
    path("", landing, name="landing"),
    path("favicon.ico", favicon, name="favicon"),
    # `/v1` without its slash is an unknown URL to OpenAI too: answered so, not redirected to /v1/.
    path("v1", invalid_url),
    path("v1/", api.urls),
    path("api/", include("gateway.management_urls")),
    path("admin/", admin.site.urls),
    path("portal/", include("portal.urls")),
    path("health", health_status, name="health-status"),
    path("health/", include("gateway.health")),
    path("metrics", metrics, name="metrics"),
]

handler400 = "gateway.error_views.bad_request"
handler403 = "gateway.error_views.permission_denied"
handler404 = "gateway.error_views.not_found"
handler500 = "gateway.error_views.server_error"
