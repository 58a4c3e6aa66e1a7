"""Portico's icon at /favicon.ico, where browsers look for it on every site (a 404 there is a console error)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

# A small arch (a portico) in SVG; browsers take an SVG icon served under the .ico name.
ICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    b'<rect width="32" height="32" rx="6" fill="#264b5d"/>'
    b'<path d="M7 26V13a9 9 0 0 1 18 0v13h-4V13a5 5 0 0 0-10 0v13z" fill="#f5dd5d"/>'
    b"</svg>"
)


@require_safe
@cache_control(public=True, max_age=86_400)
def favicon(request: HttpRequest) -> HttpResponse:
    return HttpResponse(ICON, content_type="image/svg+xml")
