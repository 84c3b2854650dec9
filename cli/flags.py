"""Flags shared by many commands, defined once."""

from __future__ import annotations

from typing import Annotated

from cyclopts import Parameter

JsonFlag = Annotated[
    bool, Parameter(name="--json", negative="", help="Print exactly one JSON document on stdout.")
]

ApiUrlFlag = Annotated[
    str | None,
    Parameter(
        name="--api-url", help="Levered server URL (else LEVERED_API_URL, then config api_url)."
    ),
]
YesFlag = Annotated[
    bool, Parameter(name=["--yes", "-y"], negative="", help="Do not ask for confirmation.")
]
