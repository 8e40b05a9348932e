"""What the loopback provider accepts as a structured-output constraint, as each real API does.

Written from the providers' side and independently of `services/script/llm/structured.py`, so a
transform that drifts out of a provider's subset is refused here with the provider's 400 (as the
real API would) rather than passing a test.

- Anthropic `output_config.format` {type: json_schema, schema}: no numeric or length bounds, no
  `oneOf`, `default`, `discriminator` or `pattern` keyword; `minItems` 0 or 1; every object
  `additionalProperties: false`.
- OpenAI `response_format` {type: json_schema, json_schema: {name, strict: true, schema}}: the root
  an object; every object lists all its properties in `required` and has `additionalProperties:
  false`; no `default`, `oneOf`, `discriminator` or length keywords; `$ref` alone in its node.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

ANTHROPIC_KEYWORDS = frozenset(
    {"type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf",
     "allOf", "$ref", "$defs", "description", "title", "format", "minItems"}
)  # fmt: skip
OPENAI_KEYWORDS = frozenset(
    {"type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf",
     "$ref", "$defs", "description", "title", "pattern", "format", "minimum", "maximum",
     "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems"}
)  # fmt: skip
SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _nodes(schema: dict[str, Any], where: str = "schema") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every subschema with its path."""
    yield where, schema
    for name, node in (schema.get("$defs") or {}).items():
        yield from _nodes(node, f"{where}.$defs.{name}")
    for name, node in (schema.get("properties") or {}).items():
        yield from _nodes(node, f"{where}.properties.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _nodes(schema["items"], f"{where}.items")
    for keyword in ("anyOf", "allOf", "oneOf"):
        for index, node in enumerate(schema.get(keyword) or []):
            yield from _nodes(node, f"{where}.{keyword}.{index}")


def _is_object(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in node


def anthropic_problems(output_config: Any) -> list[str]:
    """Why Anthropic would refuse `output_config`, or [] when it is in the supported subset."""
    if not isinstance(output_config, dict) or not isinstance(output_config.get("format"), dict):
        return ["output_config.format: a json_schema format is required for this reply"]
    fmt = output_config["format"]
    if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        return ["output_config.format: type must be 'json_schema' with a schema"]
    problems = []
    for where, node in _nodes(fmt["schema"], "output_config.format.schema"):
        unsupported = sorted(set(node) - ANTHROPIC_KEYWORDS)
        if unsupported:
            problems.append(f"{where}: unsupported keywords {unsupported}")
        if node.get("minItems", 0) not in (0, 1):
            problems.append(f"{where}: minItems must be 0 or 1")
        if _is_object(node) and node.get("additionalProperties") is not False:
            problems.append(f"{where}: objects must set additionalProperties to false")
    return problems


def openai_problems(response_format: Any) -> list[str]:
    """Why OpenAI would refuse `response_format` (strict json_schema), or []."""
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return ["response_format: type must be 'json_schema' for this reply"]
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        return ["response_format.json_schema: a schema is required"]
    problems = []
    if spec.get("strict") is not True:
        problems.append("response_format.json_schema.strict: must be true")
    if not SCHEMA_NAME.match(str(spec.get("name", ""))):
        problems.append("response_format.json_schema.name: 1-64 of [a-zA-Z0-9_-]")
    root = spec["schema"]
    if root.get("type") != "object" or "anyOf" in root:
        problems.append("response_format.json_schema.schema: the root must be an object")
    for where, node in _nodes(root, "response_format.json_schema.schema"):
        unsupported = sorted(set(node) - OPENAI_KEYWORDS)
        if unsupported:
            problems.append(f"{where}: unsupported keywords {unsupported}")
        if "$ref" in node and len(node) > 1:
            problems.append(f"{where}: $ref cannot have sibling keywords")
        if _is_object(node):
            if node.get("additionalProperties") is not False:
                problems.append(f"{where}: additionalProperties must be false")
            missing = sorted(set(node.get("properties") or {}) - set(node.get("required") or []))
            if missing:
                problems.append(f"{where}: required must list every property; missing {missing}")
    return problems


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
        return node
    resolved: dict[str, Any] = root["$defs"][ref.removeprefix("#/$defs/")]
    return resolved


def _variant(value: Any, variants: list[dict[str, Any]], root: dict[str, Any]) -> dict[str, Any]:
    """The object variant of an anyOf that `value` (a dict) is: by its constant `type`."""
    objects = [_resolve(v, root) for v in variants if _is_object(_resolve(v, root))]
    for candidate in objects:
        kind = (candidate.get("properties") or {}).get("type", {}).get("const")
        if kind is not None and kind == value.get("type"):
            return candidate
    return objects[0] if objects else {}


def fill_nulls(value: Any, node: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """`value` as a strict-mode model writes it: every property present, null when not given."""
    root = node if root is None else root
    node = _resolve(node, root)
    if isinstance(value, dict):
        if "anyOf" in node:
            node = _variant(value, node["anyOf"], root)
        properties = node.get("properties") or {}
        filled = {name: None for name in properties}
        for name, item in value.items():
            filled[name] = fill_nulls(item, properties.get(name, {}), root)
        return filled
    if isinstance(value, list):
        items = node.get("items") or {}
        return [fill_nulls(item, items, root) for item in value]
    return value
