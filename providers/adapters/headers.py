"""The headers every upstream call carries: the provider's extra headers, then its credential."""

from __future__ import annotations

from providers.values import ProviderInfo


def with_credential(headers: dict[str, str], provider: ProviderInfo, *, default_header: str) -> dict[str, str]:
    """Add the extra headers and the credential, in the provider's header or the kind's `default_header`.

    In `Authorization` a bare credential goes out as a bearer token; one that names its own
    scheme (`Token abc`, `Basic …`) goes out as it is.
    """
    headers.update(provider.extra_headers)
    if not provider.credential:
        return headers
    name = (provider.credential_header or default_header).lower()
    for extra in [key for key in headers if key.lower() == name]:
        del headers[extra]  # the credential wins over an extra header of the same name, whatever its case
    credential = provider.credential
    if name == "authorization" and " " not in credential:
        credential = f"Bearer {credential}"
    headers[name] = credential
    return headers
