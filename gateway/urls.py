from django.contrib import admin
from django.urls import path

from gateway.api import api

urlpatterns = [
    path("v1/", api.urls),
    path("admin/", admin.site.urls),
]
