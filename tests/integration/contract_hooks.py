"""Schemathesis hooks of test_openapi_contract.py (loaded by the CLI via ``SCHEMATHESIS_HOOKS``).

The run authenticates with one API key of its organization, and ``DELETE /api/v2/api-keys/{id}``
is one of the operations it tests: the stateful phase can read the key's id from
``GET /api/v2/api-keys`` and revoke it, after which every request is a (documented) 401 and
the rest of the run tests nothing. The run's own key is therefore never the one revoked.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

PROTECTED_KEY_ID = os.environ.get("LEVERED_CONTRACT_KEY_ID", "")
STAND_IN = "00000000-0000-4000-8000-000000000000"


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.path_parameters and case.path_parameters.get("key_id") == PROTECTED_KEY_ID:
        case.path_parameters["key_id"] = STAND_IN
