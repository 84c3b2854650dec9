"""``OPTIONS`` answers with every method of the resource in ``Allow``.

Litestar 2 creates a path's automatic ``OPTIONS`` handler when the path's first handler is
registered, and that handler keeps answering with the methods of that first registration:
a controller registers its handlers one by one (in name order), so ``GET`` and ``DELETE`` on
``/api/v2/metrics/{metric_id}`` answered ``Allow: DELETE, OPTIONS``
(litestar-org/litestar#4169, fixed only in Litestar 3). This ``before_request`` hook answers
those requests itself, from the route the request matched, which has every method.
"""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response
from litestar.routes import HTTPRoute
from litestar.status_codes import HTTP_204_NO_CONTENT

_LITESTAR_OPTIONS = "HTTPRoute.create_options_handler."
"""How the qualified name of Litestar's automatic ``OPTIONS`` handler begins."""


def allowed_methods(request: Request[Any, Any, Any]) -> str | None:
    """The ``Allow`` value of the route this request matched (None when no HTTP route did)."""
    template = request.scope.get("path_template")
    for route in request.app.routes:
        if isinstance(route, HTTPRoute) and route.path_format == template:
            return ", ".join(sorted(route.methods))
    return None


async def answer_options(request: Request[Any, Any, Any]) -> Response[None] | None:
    """Answer an ``OPTIONS`` request routed to Litestar's automatic handler; else let it pass."""
    if request.method != "OPTIONS":
        return None
    if not request.route_handler.fn.__qualname__.startswith(_LITESTAR_OPTIONS):
        return None
    allow = allowed_methods(request)
    if allow is None:
        return None
    return Response(
        None, status_code=HTTP_204_NO_CONTENT, headers={"allow": allow}, media_type=MediaType.TEXT
    )
