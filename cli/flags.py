"""Flags shared by many commands, defined once."""

from __future__ import annotations

from typing import Annotated

from cyclopts import Parameter

JsonFlag = Annotated[
    bool, Parameter(name="--json", negative="", help="Print exactly one JSON document on stdout.")
]
