"""Running a Ninja operation that takes the request alone, without Ninja's wrapper around each call.

For every request Ninja's `AsyncOperation.run` builds a throwaway response for
views that might take one, resolves parameter models, and looks its operation
up by method through two more coroutine frames: about a tenth of the CPU of a
chat completion, for views (chat, embeddings and the rest of the OpenAI
surface) that read their own body and return a finished response. `direct`
finds, once per URL and method, an operation that needs none of that; `run`
calls it as Ninja would: authentication first, and every exception turned into
an answer by the API's exception handlers. Anything else (path parameters,
throttles, a result that is not a response) keeps Ninja's own path.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from ninja.errors import AuthenticationError
from ninja.operation import AsyncOperation, PathView
from ninja.utils import is_async_callable


@functools.lru_cache(maxsize=1024)
def direct(view: Callable[..., Any], method: str) -> AsyncOperation | None:
    """The operation behind a resolved Ninja view for `method`, if it can be run directly; else None."""
    path_view = _path_view_of(view)
    if path_view is None:
        return None
    for operation in path_view.operations:
        if method in operation.methods:
            if (
                isinstance(operation, AsyncOperation)
                and not operation.models
                and not operation.signature.response_arg
                and not operation.throttle_objects
                and not operation.stream_format
                and all(is_async_callable(callback) for callback in operation.auth_callbacks)
            ):
                return operation
            return None
    return None


async def run(operation: AsyncOperation, request: HttpRequest) -> HttpResponseBase:
    """What `AsyncOperation.run` does for an operation `direct` returned."""
    api = operation.api
    try:
        if operation.auth_callbacks:
            for callback in operation.auth_callbacks:
                grant = await callback(request)
                if grant:
                    request.auth = grant  # type: ignore[attr-defined]
                    break
            else:
                raise AuthenticationError()
        result = await operation.view_func(request)
    except Exception as exc:  # noqa: BLE001 - as Ninja: the API's handlers make every error an answer
        return api.on_exception(request, exc)
    if isinstance(result, HttpResponseBase):
        return result
    return operation._result_to_response(request, result, api.create_temporal_response(request))


def _path_view_of(view: Callable[..., Any]) -> PathView | None:
    # Ninja's URL patterns call a closure over the PathView (PathView.get_view); nothing else leads back to it.
    for cell in getattr(view, "__closure__", None) or ():
        contents = cell.cell_contents
        if isinstance(contents, PathView):
            return contents
    return None
