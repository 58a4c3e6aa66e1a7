"""GET /: where Portico's pages are, for someone who opens the server's address in a browser.

It names only what any visitor can already find out: each page asks for its
own sign-in (the console, the portal, the management schema) or decides
itself whether to answer (the OpenAI surface's docs, /health). It carries the
console's Content-Security-Policy: the page loads nothing, runs no script and
keeps its styles inline.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from gateway.csp import POLICY


@require_safe
def landing(request: HttpRequest) -> HttpResponse:
    response = render(request, "landing.html")
    response["Content-Security-Policy"] = POLICY
    return response
