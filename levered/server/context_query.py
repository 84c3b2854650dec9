"""The ``?context=`` query parameter of results and model state: a JSON object of context
values whose posterior the response describes (unseen values fall back to the population)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar.params import QueryParameter

from levered.errors import ValidationError

ContextQuery = Annotated[
    str | None,
    QueryParameter(
        description='JSON object of context values, e.g. {"device": "mobile"}: the posterior '
        "fields describe that context; omitted, the population."
    ),
]


def parse_context(raw: str | None) -> dict[str, Any] | None:
    if raw is None or raw == "":
        return None
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ValidationError(
            f"context is not valid JSON: {exc}",
            details=[{"path": "$.query.context", "message": str(exc)}],
        ) from exc
    if not isinstance(value, dict) or not all(
        isinstance(v, (str, bool, int, float)) or v is None for v in value.values()
    ):
        raise ValidationError(
            "context must be a JSON object of scalar values",
            details=[{"path": "$.query.context", "message": "expected an object of scalars"}],
        )
    return value
