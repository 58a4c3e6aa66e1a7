from django.contrib import admin
from django.urls import include, path

from gateway.api import api

urlpatterns = [
    path("v1/", api.urls),
    path("api/", include("gateway.management_urls")),
    path("admin/", admin.site.urls),
]
