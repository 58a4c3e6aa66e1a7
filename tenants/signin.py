"""The admin's sign-in, throttled: after PORTICO_ADMIN_LOGIN_ATTEMPTS failures for one username from one
address within PORTICO_ADMIN_LOGIN_WINDOW seconds, the form refuses that pair without checking the password
until the window ends.

Failures are counted per fixed window in Django's cache (Redis when REDIS_URL is set, so every process
shares the count); `incr` keeps concurrent attempts from slipping past the count.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest


def _failures_key(username: str, request: HttpRequest | None) -> str:
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    who = hashlib.sha256(f"{username.casefold()}\x00{address}".encode()).hexdigest()
    window = int(time.time() // settings.PORTICO_ADMIN_LOGIN_WINDOW)
    return f"admin-signin-failures:{who}:{window}"


def signin_failures(*, username: str, request: HttpRequest | None) -> int:
    return int(cache.get(_failures_key(username, request), 0))


def signin_failure_record(*, username: str, request: HttpRequest | None) -> None:
    key = _failures_key(username, request)
    cache.add(key, 0, timeout=settings.PORTICO_ADMIN_LOGIN_WINDOW)
    cache.incr(key)


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "throttled": "Too many failed sign-ins for this username. Try again later.",
    }

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        if signin_failures(username=username, request=self.request) >= settings.PORTICO_ADMIN_LOGIN_ATTEMPTS:
            raise ValidationError(self.error_messages["throttled"], code="throttled")
        try:
            return super().clean()
        except ValidationError:
            signin_failure_record(username=username, request=self.request)
            raise
