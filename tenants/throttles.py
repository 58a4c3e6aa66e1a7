"""Throttles of the management API, their rates read from settings on each request so a change applies at once."""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class UserThrottle(UserRateThrottle):
    def get_rate(self) -> str:
        return str(settings.PORTICO_API_THROTTLE_USER)


class AnonymousThrottle(AnonRateThrottle):
    def get_rate(self) -> str:
        return str(settings.PORTICO_API_THROTTLE_ANON)
