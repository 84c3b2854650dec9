"""docs/api.md's reference is the app's OpenAPI document: a new endpoint without regenerating
the file fails here (fix: ``python -m levered.server.api_docs --write``)."""

from __future__ import annotations

from levered.server.api_docs import BEGIN, DOC, END, openapi_document, render, updated


def test_docs_api_md_is_up_to_date() -> None:
    current = DOC.read_text()
    assert BEGIN in current and END in current
    assert current == updated(current, render(openapi_document())), (
        "docs/api.md is out of date: run python -m levered.server.api_docs --write"
    )


def test_every_operation_is_in_the_index() -> None:
    doc = openapi_document()
    text = render(doc)
    for path, item in doc["paths"].items():
        for method in ("get", "post", "put", "patch", "delete"):
            if method in item:
                assert f"| {method.upper()} | `{path}` |" in text
