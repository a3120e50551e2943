"""KubeRay CRD schemas: finding and loading them, API-server defaulting, and checking a `spec` against one.

- `schema_dir` / `load_schema`: the `openAPIV3Schema` of each of `KINDS` (KubeRay v1.7.0, `ray.io/v1`);
- `apply_defaults`: what the API server stores (`null` fields pruned, `default`s filled in);
- `spec_problems`: a `spec` against `properties.spec` with a JSON-schema (draft 4) validator that also knows
  `nullable`, `format: int32/int64`, `x-kubernetes-list-type: map/set` and, in strict mode, closed objects;
  each error as one line (JSON path, value, what is allowed);
- `show` / `json_path` / `unknown_keys`: the wording of a problem, shared with `cluster._kuberay_rules`.

Used by `cluster.kuberay_validate` (which documents the checks and their sources); no Ray needed.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jsonschema

from modelsat.errors import ConfigError

__all__ = [
    "API_VERSION",
    "KINDS",
    "SCHEMA_DIR_ENV",
    "apply_defaults",
    "json_path",
    "load_schema",
    "schema_dir",
    "show",
    "spec_problems",
    "unknown_keys",
]

API_VERSION = "ray.io/v1"
KINDS: dict[str, str] = {kind: f"{kind.lower()}-v1.json" for kind in ("RayCluster", "RayJob", "RayService")}
"""Supported kinds and the schema file of each, in `schema_dir()`."""

SCHEMA_DIR_ENV = "MODELSAT_KUBERAY_SCHEMAS"

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_QUANTITY_PATTERN_START = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)"


def schema_dir() -> Path:
    """Directory of the KubeRay CRD schemas: `$MODELSAT_KUBERAY_SCHEMAS`, else `<repo>/../shared/kuberay-schemas`."""
    env = os.environ.get(SCHEMA_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "kuberay-schemas"


def load_schema(kind: str) -> dict[str, Any]:
    """The `openAPIV3Schema` of one KubeRay kind (cached; do not mutate it).

    Args:
        kind: one of `KINDS` (`RayCluster`, `RayJob`, `RayService`).
    Returns:
        The schema of the whole object; `["properties"]["spec"]` is the part a manifest is checked against.
    Raises:
        ConfigError: if `kind` is unknown, or its schema file is missing or not JSON.
    """
    if kind not in KINDS:
        raise ConfigError(f"kind={kind!r}: not a KubeRay kind; allowed: {', '.join(KINDS)}")
    return _read_schema(str(schema_dir() / KINDS[kind]))


@functools.lru_cache(maxsize=16)
def _read_schema(path: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as e:
        raise ConfigError(
            f"KubeRay schema {path} not found; set ${SCHEMA_DIR_ENV} to the directory holding "
            f"{', '.join(KINDS.values())}"
        ) from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"KubeRay schema {path} is not valid JSON: {e}") from e


def apply_defaults(instance: Any, schema: dict[str, Any]) -> Any:
    """What the API server stores: `null` fields pruned (unless `nullable`), then missing `default`s filled in.

    Only fields the schema knows are touched (unknown keys are kept, for strict mode to report). Recurses into
    `properties`, `additionalProperties` and `items`.

    Args:
        instance: a parsed manifest or part of one (not modified).
        schema: the (sub)schema that describes `instance`.
    Returns:
        A new instance with the defaults applied.
    """
    if isinstance(instance, dict):
        props: dict[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        out: dict[str, Any] = {}
        for key, value in instance.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is None:
                out[key] = value
            elif value is not None or sub.get("nullable", False):
                out[key] = apply_defaults(value, sub)
        for key, sub in props.items():
            if key not in out and "default" in sub:
                out[key] = apply_defaults(copy.deepcopy(sub["default"]), sub)
        return out
    if isinstance(instance, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in instance]
    return instance


def show(value: Any, limit: int = 80) -> str:
    """A value as JSON (what a YAML author recognises), cut to `limit` characters."""
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_path(parts: Sequence[Any]) -> str:
    """A JSON path as a problem names it: `spec.rayClusterSpec.workerGroupSpecs[0]["ray.io/x"]`.

    Args:
        parts: field names (`str`) and list indices (`int`), outermost first.
    Returns:
        The path; keys that are not plain identifiers are quoted in brackets.
    """
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def unknown_keys(where: Sequence[Any], found: dict[str, Any], allowed: Sequence[str]) -> Iterator[str]:
    """One problem per key of `found` not in `allowed`, with the closest allowed key as a hint.

    Args:
        where: JSON path of the mapping `found` (as for `json_path`).
        found: the mapping as written.
        allowed: the keys it may hold.
    Returns:
        The problems, in the order of `found`.
    """
    for key in found:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            yield f"{json_path([*where, key])}: unknown field{hint}; allowed: {', '.join(sorted(allowed))}"


def _prepare(node: Any, strict: bool) -> Any:
    """Schema as jsonschema should see it: `nullable` as a `null` type; in strict mode, closed objects."""
    if isinstance(node, list):
        return [_prepare(n, strict) for n in node]
    if not isinstance(node, dict):
        return node
    # `properties` maps field names (not keywords) to schemas; `enum`, `default`, `required` hold data.
    out = {
        k: v if k in ("enum", "default", "required", "properties") else _prepare(v, strict)
        for k, v in node.items()
    }
    if "properties" in node:
        out["properties"] = {k: _prepare(v, strict) for k, v in node["properties"].items()}
    if node.get("nullable") and isinstance(node.get("type"), str):
        out["type"] = [node["type"], "null"]
    if (
        strict
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _list_type(validator: Any, list_type: str, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    """`x-kubernetes-list-type`: items of a `set`, and the key tuples of a `map`, are unique."""
    if not isinstance(instance, list) or list_type not in ("map", "set"):
        return
    keys = schema.get("x-kubernetes-list-map-keys", [])
    seen: dict[str, int] = {}
    for i, item in enumerate(instance):
        by_key = list_type == "map" and isinstance(item, dict)
        ident = {k: item.get(k) for k in keys} if by_key else item
        text = json.dumps(ident, sort_keys=True, default=str)
        if text in seen:
            what = ", ".join(f"{k}={show(v)}" for k, v in ident.items()) if by_key else show(ident)
            yield jsonschema.ValidationError(
                f"duplicate entry ({what}) of item [{seen[text]}]; allowed: unique {' + '.join(keys) or 'items'}",
                validator="x-kubernetes-list-type",
                path=(i,),
                instance=item,
            )
        seen.setdefault(text, i)


_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("int32")
def _is_int32(value: Any) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


@_FORMATS.checks("int64")
def _is_int64(value: Any) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


# OpenAPI 3.0 schemas use the keywords of JSON Schema draft 4/5 (plus `nullable` and `x-kubernetes-*`).
_K8sValidator = jsonschema.validators.extend(
    jsonschema.Draft4Validator, {"x-kubernetes-list-type": _list_type}
)


def spec_problems(kind: str, spec: Any, strict: bool) -> list[str]:
    """Every problem of a (defaulted) `spec` against `properties.spec` of the kind's CRD schema.

    Args:
        kind: one of `KINDS`.
        spec: the manifest's `spec`, after `apply_defaults`.
        strict: reject fields the schema does not list (closed objects, see `_prepare`).
    Returns:
        One line per problem (JSON path, value, what is allowed), sorted by path; empty if the spec is valid.
    Raises:
        ConfigError: if the schema file is missing or not JSON.
    """
    return list(_schema_problems(spec, _validator(str(schema_dir() / KINDS[kind]), strict)))


@functools.lru_cache(maxsize=16)
def _validator(path: str, strict: bool) -> Any:
    return _K8sValidator(_prepare(_read_schema(path)["properties"]["spec"], strict), format_checker=_FORMATS)


def _schema_problems(spec: Any, validator: Any) -> Iterator[str]:
    errors = sorted(validator.iter_errors(spec), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        where = ["spec", *error.absolute_path]
        at = f"{json_path(where)}={show(error.instance)}"
        kw, rule, sub = error.validator, error.validator_value, error.schema
        if kw == "additionalProperties" and rule is False:
            yield from unknown_keys(where, error.instance, list(sub.get("properties", {})))
        elif kw == "required":
            for key in rule:
                if key not in error.instance:
                    yield f"{json_path([*where, key])}: required field is missing"
        elif kw == "type":
            hint = ""
            if len(where) >= 2 and where[-2] == "rayStartParams":
                hint = f" (values are passed to `ray start` as strings: quote it, {json.dumps(str(error.instance))})"
            yield f"{at}: expected {' or '.join(rule) if isinstance(rule, list) else rule}{hint}"
        elif kw == "enum":
            yield f"{at}: allowed: {', '.join(map(str, rule))}"
        elif kw == "anyOf" and sub.get("x-kubernetes-int-or-string"):
            yield f"{at}: expected an integer or a string"
        elif kw == "pattern" and str(rule).startswith(_QUANTITY_PATTERN_START):
            yield f"{at}: not a Kubernetes quantity; allowed: e.g. 8, 500m, 32Gi, 1.5"
        elif kw == "format":
            bits = str(rule).removeprefix("int")
            yield f"{at}: out of range; allowed: a signed {bits}-bit integer"
        else:
            yield f"{at}: {error.message}"
