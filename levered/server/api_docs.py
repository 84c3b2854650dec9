"""Render the reference part of docs/api.md from the app's OpenAPI document, so it cannot drift.

Run ``python -m levered.server.api_docs --write`` after adding or changing an endpoint (``--check``
exits 1 when the file is out of date; tests/unit/test_api_docs.py runs the check). Only the text
between the two marker lines is generated; the hand-written prose around it is kept as it is.
The document is built without a database: the app is created, never started.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

BEGIN = "<!-- BEGIN GENERATED REFERENCE: python -m levered.server.api_docs --write -->"
END = "<!-- END GENERATED REFERENCE -->"
DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
_HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def openapi_document() -> dict[str, Any]:
    """The corrected document the server serves at ``/schema/openapi.json``."""
    # Default settings, not this shell's environment, so the file does not depend on who runs
    # it; create_app refuses to build without a database URL but connects only when started.
    from levered.server.app import create_app
    from levered.server.openapi import document
    from levered.settings import load_settings

    app = create_app(load_settings({"LEVERED_DATABASE_URL": "postgresql://docs@127.0.0.1:1/docs"}))
    return document(app, app.openapi_schema.to_schema())


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return f"`{schema['$ref'].rsplit('/', 1)[-1]}`"
    if "oneOf" in schema or "anyOf" in schema:
        return " or ".join(_type(s) for s in schema.get("oneOf", schema.get("anyOf", [])))
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if isinstance(kind, list):
        return " or ".join(map(str, kind))
    return str(kind)


def _limits(schema: dict[str, Any]) -> str:
    keys = ("minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems", "enum",
            "format", "pattern", "default")  # fmt: skip
    return ", ".join(f"{k} {schema[k]}" for k in keys if k in schema)


def render(doc: dict[str, Any]) -> str:
    """The generated Markdown: the endpoint index, each operation, then every schema."""
    lines = ["## Endpoints", "", "| method | path | summary | statuses |", "|---|---|---|---|"]
    operations = []
    for path, item in sorted(doc["paths"].items()):
        for method in _HTTP_METHODS:
            if method in item:
                operations.append((path, method, item[method]))
                statuses = ", ".join(sorted(item[method].get("responses", {})))
                summary = _cell(item[method].get("summary", ""))
                lines.append(f"| {method.upper()} | `{path}` | {summary} | {statuses} |")
    lines.append("")
    for path, method, op in operations:
        lines += [f"### {method.upper()} `{path}`", ""]
        if op.get("description"):
            lines += [op["description"].strip(), ""]
        for param in op.get("parameters", []):
            schema = param.get("schema", {})
            lines.append(
                f"- {param.get('in')} parameter `{param['name']}`"
                f"{' (required)' if param.get('required') else ''}: {_type(schema)}"
                f"{'; ' + _limits(schema) if _limits(schema) else ''}"
            )
        body = op.get("requestBody", {}).get("content", {})
        for media, content in sorted(body.items()):
            lines.append(f"- body ({media}): {_type(content.get('schema', {}))}")
        for status, response in sorted(op.get("responses", {}).items()):
            lines.append(f"- **{status}**: {_cell(response.get('description', ''))}")
        lines.append("")
    lines += ["## Schemas", ""]
    for name, schema in sorted(doc.get("components", {}).get("schemas", {}).items()):
        lines += [f"### `{name}`", ""]
        if schema.get("description"):
            lines += [_cell(schema["description"]), ""]
        props = schema.get("properties", {})
        if props:
            required = set(schema.get("required", []))
            lines += ["| field | type | required | limits |", "|---|---|---|---|"]
            for field, sub in props.items():
                lines.append(
                    f"| `{field}` | {_cell(_type(sub))} | {'yes' if field in required else ''} "
                    f"| {_cell(_limits(sub))} |"
                )
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def updated(text: str, reference: str) -> str:
    """``text`` with the part between the markers replaced (markers appended when missing)."""
    if BEGIN not in text or END not in text:
        return f"{text.rstrip()}\n\n{BEGIN}\n{reference}{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{reference}{END}{tail}"


def main(argv: list[str]) -> int:
    current = DOC.read_text() if DOC.exists() else ""
    wanted = updated(current, render(openapi_document()))
    if "--write" in argv:
        DOC.write_text(wanted)
        return 0
    if current != wanted:
        print(
            f"{DOC} is out of date: run python -m levered.server.api_docs --write", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
