"""A lighter way through FastAPI for the requests made most.

FastAPI solves a route's parameters anew on every request: each dependency, path
parameter and body goes through its generic solver, which on the busiest routes took as
long as the work itself. :class:`LeanRoute` gives a route of a simple shape a handler that
does the same directly, for a request that is well formed:

* every dependency takes nothing but the request (``TokenWith``, ``DatabaseDep``) and is
  awaited in the declared order, as FastAPI would;
* path parameters are ``str``, passed as they are; the query string, if read, is one
  model (``Annotated[Model, Query()]``), validated by FastAPI's own field;
* a body, if any, is JSON (``Content-Type: application/json``) and valid for its model,
  checked by FastAPI's own field (the same validation);
* the endpoint answers with a :class:`~starlette.responses.Response`.

The route answers such a request itself, without FastAPI's per-request machinery (its
request wrapper and exit stacks, the route-level exception wrapper: an error raised goes
to the application's handlers, the same ones). Every other request, one whose body is
not JSON or not valid among them, goes to FastAPI's own handler, with the body read so
far given again, and is answered as it always was (the errors are FastAPI's, byte for
byte). A route of another shape is FastAPI's entirely. The OpenAPI document is FastAPI's.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple, get_type_hints

from fastapi._compat import ModelField
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from calnotify.api.middleware import replay

LeanHandler = Callable[[Request], Coroutine[Any, Any, "Response | _Fallback"]]


class LeanRoute(APIRoute):
    """An :class:`~fastapi.routing.APIRoute` whose requests take the lean path when its
    shape allows (see the module's docstring)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        super().__init__(path, endpoint, **options)
        self._lean = _lean_handler(self)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self._lean is None
            or scope["method"] not in (self.methods or ())
            or getattr(scope.get("app"), "dependency_overrides", None)  # FastAPI's to apply
        ):
            await super().handle(scope, receive, send)
            return
        answer = await self._lean(Request(scope, receive, send))
        if isinstance(answer, Response):
            await answer(scope, receive, send)
            return
        # FastAPI's own handler answers, given the body again if it was read.
        await super().handle(
            scope, receive if answer.body is None else replay(answer.body, receive), send
        )


class _Fallback(NamedTuple):
    body: bytes | None


def _simple_dependency(dependant: Dependant) -> bool:
    return (
        dependant.name is not None
        and dependant.request_param_name is not None
        and not (
            dependant.dependencies
            or dependant.path_params
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or dependant.body_params
            or dependant.websocket_param_name
            or dependant.http_connection_param_name
            or dependant.response_param_name
            or dependant.background_tasks_param_name
            or dependant.security_scopes_param_name
        )
        and _is_coroutine(dependant.call)
    )


def _is_coroutine(call: Any) -> bool:
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
        getattr(call, "__call__", None)  # noqa: B004 - an instance with async __call__
    )


def _answers_response(endpoint: Callable[..., Any]) -> bool:
    try:
        answer = get_type_hints(endpoint).get("return")
    except Exception:  # an annotation that does not resolve: not ours to judge
        return False
    return isinstance(answer, type) and issubclass(answer, Response)


def _query_model(dependant: Dependant) -> ModelField | None:
    """The route's query string as one model (``Annotated[Model, Query()]``) that ignores
    what it does not name, or None."""
    if len(dependant.query_params) != 1:
        return None
    field = dependant.query_params[0]
    model = field.field_info.annotation
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    return field if model.model_config.get("extra", "ignore") == "ignore" else None


def _lean_handler(route: APIRoute) -> LeanHandler | None:
    dependant = route.dependant
    if (
        not _is_coroutine(dependant.call)
        or not _answers_response(route.endpoint)
        or not all(_simple_dependency(d) for d in dependant.dependencies)
        or any(f.field_info.annotation is not str for f in dependant.path_params)
        or (dependant.query_params and _query_model(dependant) is None)
        or dependant.header_params
        or dependant.cookie_params
        or len(dependant.body_params) > 1
        or route._embed_body_fields
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
    ):
        return None
    endpoint = dependant.call
    assert endpoint is not None
    dependencies = [(str(d.name), d.call) for d in dependant.dependencies]
    paths = [(f.name, f.alias) for f in dependant.path_params]
    request_name = dependant.request_param_name
    body_field = route.body_field
    body_name = dependant.body_params[0].name if dependant.body_params else None
    query_field = _query_model(dependant)

    async def handler(request: Request) -> Response | _Fallback:
        # In FastAPI's order: the body is parsed, then the dependencies are solved, then the
        # body is validated (a bad token is refused before a bad body, malformed JSON first).
        raw: bytes | None = None
        parsed: Any = None
        if body_field is not None:
            if request.headers.get("content-type") != "application/json":
                return _Fallback(None)
            raw = await request.body()
            try:
                parsed = json.loads(raw)
            except ValueError:
                return _Fallback(raw)
        values: dict[str, Any] = {}
        for name, call in dependencies:
            values[name] = await call(request)  # type: ignore[misc]
        if body_field is not None and body_name is not None:
            body, errors = body_field.validate(parsed, values, loc=("body",))
            if errors:
                return _Fallback(raw)
            values[body_name] = body
        if query_field is not None:
            page, errors = query_field.validate(dict(request.query_params), {}, loc=("query",))
            if errors:
                return _Fallback(raw)
            values[query_field.name] = page
        path_params = request.path_params
        for name, alias in paths:
            values[name] = path_params[alias]
        if request_name is not None:
            values[request_name] = request
        answer: Response = await endpoint(**values)
        return answer

    return handler
