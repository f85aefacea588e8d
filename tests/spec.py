"""Check response bodies against HighLevel's official OpenAPI specs (tests/reference/)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

REFERENCE = Path(__file__).parent / "reference" / "highlevel-openapi"
BASE = "https://highlevel.test/"
SPEC_FILES = {
    "2021-04-15": "calendars.json",
    "v3": "calendars-v3.json",
    # The contacts, users and locations specs are written for Version 2021-07-28.
    "contacts": "contacts.json",
    "users": "users.json",
    "locations": "locations.json",
}
COMMON_FILES = {"v3": "common-schemas-v3.json"}


# Where HighLevel's spec contradicts its own examples and what its API sends, the examples
# win: CalendarEventDTO types these as "object", but they are ISO 8601 strings.
ERRATA = {
    "CalendarEventDTO": ("startTime", "endTime", "dateAdded", "dateUpdated"),
}


@cache
def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((REFERENCE / name).read_text())
    schemas = loaded.get("components", {}).get("schemas", {})
    for schema_name, fields in ERRATA.items():
        for field in fields:
            if schema_name in schemas and field in schemas[schema_name].get("properties", {}):
                schemas[schema_name]["properties"][field]["type"] = "string"
    return loaded


@cache
def _registry(version: str) -> Registry:
    spec = Resource(contents=_load(SPEC_FILES[version]), specification=DRAFT4)
    common_file = COMMON_FILES.get(version, "common-schemas.json")
    common = Resource(contents=_load(common_file), specification=DRAFT4)
    return Registry().with_resources(
        [(f"{BASE}calendars/spec.json", spec), (f"{BASE}common/common-schemas.json", common)]
    )


def operation(operation_id: str, version: str = "2021-04-15") -> tuple[str, str, dict[str, Any]]:
    for path, operations in _load(SPEC_FILES[version])["paths"].items():
        for method, op in operations.items():
            if isinstance(op, dict) and op.get("operationId") == operation_id:
                return method.upper(), path, op
    raise KeyError(operation_id)


def assert_conforms(
    operation_id: str, response: httpx.Response, version: str = "2021-04-15"
) -> None:
    """The response's status is one the spec lists and its body matches that schema."""
    _, _, op = operation(operation_id, version)
    documented = op["responses"]
    status = str(response.status_code)
    if status not in documented:
        # 403/404/413 are calnotify answers HighLevel's spec does not list (semantics §1);
        # they still carry HighLevel's error envelope.
        assert response.status_code in (403, 404, 413), (operation_id, status, response.text)
        body = response.json()
        assert body["statusCode"] == response.status_code
        assert isinstance(body["message"], str)
        assert isinstance(body["error"], str)
        return
    assert response.headers["content-type"].startswith("application/json")
    schema = documented[status]["content"]["application/json"]["schema"]
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    if ref and ref.startswith("../common/"):
        schema = {"$ref": BASE + "common/" + ref.removeprefix("../common/")}
    validator = Draft4Validator(_rebase(schema), registry=_registry(version))
    errors = sorted(validator.iter_errors(response.json()), key=lambda e: list(e.path))
    assert not errors, f"{operation_id} {status}: " + "; ".join(
        f"{list(e.path)}: {e.message}" for e in errors
    )


def _rebase(schema: Any) -> Any:
    """Point the spec's local refs (#/components/...) at the registered spec document."""
    if isinstance(schema, dict):
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/"):
                out[key] = f"{BASE}calendars/spec.json{value}"
            else:
                out[key] = _rebase(value)
        return out
    if isinstance(schema, list):
        return [_rebase(v) for v in schema]
    return schema
