"""Reading a source's list: one bounded GET, every way it can fail named for the operator."""

from __future__ import annotations

import httpx
from django.conf import settings

from providers.http import DocumentTooLarge, fetch_document


class SourceUnreadable(Exception):
    """The list could not be read; the registry keeps what the last good list made of it."""


def list_read(*, url: str, credential: str) -> bytes:
    """The list's bytes; raises SourceUnreadable with a message fit for the operator (never the credential)."""
    headers = {"accept": "application/json"}
    if credential:
        headers["authorization"] = credential if " " in credential else f"Bearer {credential}"
    try:
        document = fetch_document(
            url,
            headers=headers,
            timeout=settings.PORTICO_MODEL_LIST_TIMEOUT,
            max_bytes=settings.PORTICO_MODEL_LIST_MAX_BYTES,
        )
    except httpx.TimeoutException:
        raise SourceUnreadable(f"timed out after {settings.PORTICO_MODEL_LIST_TIMEOUT:g} s") from None
    except httpx.TransportError as exc:
        raise SourceUnreadable(f"could not reach the list: {exc.__class__.__name__}") from None
    except httpx.InvalidURL:
        raise SourceUnreadable("the list's URL is not valid") from None
    except DocumentTooLarge as exc:
        raise SourceUnreadable(str(exc)) from None
    if document.status_code != 200:
        raise SourceUnreadable(f"the list answered HTTP {document.status_code}, not 200")
    return document.content
