"""Native structured output: our reply schemas in the subset each provider constrains decoding to.

Constrained decoding guarantees the reply's shape, so a reply is valid JSON of the right shape
unless it was cut off at the output limit; our own validation (`schema.parse_reply` and the
content checks) still runs after it, since a schema cannot say "a speaker from this cast" for a
provider that ignores enums, nor "one beat per scene".

- Anthropic (`output_config.format`, type `json_schema`): the SDK's own `transform_schema`
  (public since anthropic 2.x), which keeps what the API supports and folds every other keyword
  (lengths, defaults, patterns, `minItems` above 1) into the description, so the model still reads
  it. Properties may stay optional.
- OpenAI-compatible (`response_format`, type `json_schema`, `strict: true`): strict mode needs
  every property listed in `required`, `additionalProperties: false` on every object and no
  `default`, `oneOf`, `discriminator` or length keywords. A property that had a default becomes
  nullable instead; `drop_nulls` turns those nulls back into "use the default" before validation.
"""

from __future__ import annotations

import copy
from typing import Any

import anthropic

# Keywords OpenAI strict mode accepts besides the structural ones; anything else is folded into
# the description (as the Anthropic SDK does) so the model still sees the constraint.
OPENAI_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "enum", "const",
        "anyOf", "$ref", "$defs", "description", "pattern", "format", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems",
    }
)  # fmt: skip
_DROPPED = frozenset({"title", "discriminator"})  # Says nothing the model needs.
SCHEMA_NAME_CHARS = 64  # OpenAI: json_schema.name is [a-zA-Z0-9_-], at most 64 characters.


def anthropic_output_config(schema: dict[str, Any]) -> dict[str, Any]:
    """`output_config` of a Messages API request whose reply must match `schema`."""
    return {"format": {"type": "json_schema", "schema": anthropic.transform_schema(schema)}}


def openai_response_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """`response_format` of a chat.completions request whose reply must match `schema`."""
    safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)[:SCHEMA_NAME_CHARS]
    return {
        "type": "json_schema",
        "json_schema": {"name": safe or "reply", "strict": True, "schema": openai_strict(schema)},
    }


def openai_strict(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` made explicitly strict (see the module doc); the input is not changed."""
    source = copy.deepcopy(schema)
    definitions = source.pop("$defs", None)
    strict = _strict(source)
    if definitions:
        strict["$defs"] = {name: _strict(node) for name, node in definitions.items()}
    return strict


def _strict(node: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        return {"$ref": node["$ref"]}  # Strict mode allows no keywords beside a $ref.
    out: dict[str, Any] = {}
    folded: list[str] = []
    for key, value in node.items():
        if key in ("oneOf", "anyOf"):
            out["anyOf"] = [_strict(variant) for variant in value]
        elif key == "properties":
            out["properties"] = {name: _strict(prop) for name, prop in value.items()}
        elif key == "items":
            out["items"] = _strict(value)
        elif key in _DROPPED or key == "required" or key == "additionalProperties":
            continue
        elif key in OPENAI_KEYWORDS:
            out[key] = value
        elif key != "default":
            folded.append(f"{key}: {value}")
    if "properties" in out:
        required = set(node.get("required", ()))
        for name, prop in out["properties"].items():
            if name not in required:
                out["properties"][name] = _nullable(prop)
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
        out.setdefault("type", "object")
    if folded:
        described = out.get("description", "")
        out["description"] = (described + "\n\n" if described else "") + "; ".join(folded)
    return out


def _nullable(node: dict[str, Any]) -> dict[str, Any]:
    """`node` that also accepts null (strict mode's way of saying "optional")."""
    variants = node.get("anyOf")
    if variants is not None:
        if not any(v.get("type") == "null" for v in variants):
            node["anyOf"] = [*variants, {"type": "null"}]
        return node
    if "$ref" in node:
        return {"anyOf": [node, {"type": "null"}]}
    if "enum" in node and None not in node["enum"]:
        node["enum"] = [*node["enum"], None]
    kind = node.get("type")
    if isinstance(kind, str):
        node["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        node["type"] = [*kind, "null"]
    return node


def drop_nulls(value: Any) -> Any:
    """`value` without the null members of its objects: a strict reply's "not given", so the
    model's defaults apply. (No field of ours gives null a meaning of its own.)"""
    if isinstance(value, dict):
        return {key: drop_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [drop_nulls(item) for item in value]
    return value
