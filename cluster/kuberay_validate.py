"""Offline validation of KubeRay manifests (`RayJob`, `RayService`, `RayCluster`; `ray.io/v1`, KubeRay v1.7.0).

Checks a manifest the way the Kubernetes API server and the KubeRay operator would, without a cluster:

1. `apiVersion` is `ray.io/v1` and `kind` one of `KINDS`;
2. `metadata.name` is a DNS-1035 label of at most 63 characters (47 for RayJob and RayService: the operator
   appends 6 characters to name the RayCluster it creates);
3. `spec`, with `null` values pruned and the schema's `default`s applied (as the API server does before it
   validates; e.g. a worker group's `minReplicas`/`maxReplicas` are `required` but defaulted), against
   `properties.spec` of the CRD's `openAPIV3Schema`, plus `format: int32/int64` ranges and the uniqueness of
   `x-kubernetes-list-type: map/set` lists (e.g. two worker groups with one `groupName`);
4. strict mode (the default): `additionalProperties: false` wherever the schema lists `properties` and has
   no `additionalProperties` or `x-kubernetes-preserve-unknown-fields` of its own, so a misspelled field
   (`shutdownAfterJobFinish`) fails here instead of being pruned by the server (or, with kubectl's default
   strict field validation, rejected only at apply time);
5. a few operator rules the schema cannot express: a RayJob names `rayClusterSpec` or `clusterSelector`, a
   known `submissionMode`, a `runtimeEnvYAML` that parses to a mapping; each group has a container; a
   RayService's `serveConfigV2` validates with Ray Serve's own `ServeDeploySchema` (Ray is imported lazily,
   for RayService only).

Not checked: CEL rules (`x-kubernetes-validations`, e.g. `deletionStrategy`) and Pod rules the core API
validates outside the CRD schema (e.g. a container's `image`).

Run as `python -m cluster.kuberay_validate k8s/*.yaml`: prints `ok <file> (<kind> <name>)` per manifest, or the
error, and exits 2 if any manifest is invalid.

Sources:
    CRD schemas (`$MODELSAT_KUBERAY_SCHEMAS`, default `../shared/kuberay-schemas`), extracted from
        https://github.com/ray-project/kuberay/tree/v1.7.0/ray-operator/config/crd/bases
    operator rules: ray-operator/controllers/ray/utils/validation.go and constant.go
        (`MaxRayJobNameLength = MaxRayClusterNameLength - 6`), same tag
    pruning, defaulting, nullable, list types:
        https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/
    DNS-1035 label: https://kubernetes.io/docs/concepts/overview/working-with-objects/names/#rfc-1035-label-names
"""

from __future__ import annotations

import argparse
import copy
import difflib
import functools
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from pydantic import ValidationError

from modelsat.errors import ConfigError

__all__ = [
    "API_VERSION",
    "KINDS",
    "apply_defaults",
    "load_schema",
    "main",
    "schema_dir",
    "validate_file",
    "validate_manifest",
]

API_VERSION = "ray.io/v1"
KINDS: dict[str, str] = {kind: f"{kind.lower()}-v1.json" for kind in ("RayCluster", "RayJob", "RayService")}
"""Supported kinds and the schema file of each, in `schema_dir()`."""

SCHEMA_DIR_ENV = "MODELSAT_KUBERAY_SCHEMAS"
MAX_NAME_CHARS = {"RayCluster": 63, "RayJob": 47, "RayService": 47}
SUBMISSION_MODES = ("K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode")
# ObjectMeta fields a manifest may set; the others (uid, resourceVersion, ...) are written by the server.
METADATA_FIELDS = tuple("annotations finalizers generateName labels name namespace ownerReferences".split())
RAY_START_RESOURCE_PARAMS = ("num-cpus", "num-gpus", "memory", "resources")

_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
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


def validate_manifest(doc: dict[str, Any], strict: bool = True, source: str = "manifest") -> None:
    """Check one parsed KubeRay manifest (see the module docstring for what is checked).

    Args:
        doc: the manifest, as parsed from YAML.
        strict: reject fields the schema does not list (misspellings) instead of ignoring them.
        source: where `doc` comes from, for the error message (e.g. `k8s/x.yaml#1`).
    Raises:
        ConfigError: naming, for each problem, the JSON path of the field, its value and what is allowed.
    """
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: a manifest is a mapping, got {_show(doc)}")
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    if kind not in KINDS:
        raise ConfigError(f"{source}: kind={_show(kind)}: not supported; allowed: {', '.join(KINDS)}")
    if api_version != API_VERSION:
        raise ConfigError(f"{source}: apiVersion={_show(api_version)}: allowed: {API_VERSION}")
    schema = load_schema(kind)
    problems = [*_check_top_level(doc, strict), *_check_metadata(kind, doc.get("metadata"), strict)]
    if isinstance(doc.get("spec"), dict):
        spec = apply_defaults(doc["spec"], schema["properties"]["spec"])
        schema_problems = list(_schema_problems(spec, _validator(str(schema_dir() / KINDS[kind]), strict)))
        problems += schema_problems
        if not schema_problems:  # the operator rules assume a spec of the right shape
            problems += _operator_problems(kind, spec, strict)
    if problems:
        name = doc.get("metadata", {}).get("name") if isinstance(doc.get("metadata"), dict) else None
        head = f"{source}: {kind} {name or '<unnamed>'}"
        unique = list(dict.fromkeys(problems))
        if len(unique) == 1:
            raise ConfigError(f"{head}: {unique[0]}")
        raise ConfigError(f"{head}: {len(unique)} problems:\n" + "\n".join(f"  - {p}" for p in unique))


def validate_file(path: str | Path, strict: bool = True) -> list[tuple[str, str]]:
    """Check every manifest of a (multi-document) YAML file.

    Args:
        path: the YAML file; empty documents are skipped.
        strict: as for `validate_manifest`.
    Returns:
        `(kind, metadata.name)` of each manifest, in file order.
    Raises:
        ConfigError: if the file cannot be read or parsed, holds no manifest, or a manifest is invalid (the
            first invalid one is reported, as `<path>#<document index>`).
    """
    path = Path(path)
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not docs:
        raise ConfigError(f"{path}: no manifest in the file; expected one of {', '.join(KINDS)}")
    found = []
    for i, doc in enumerate(docs):
        validate_manifest(doc, strict=strict, source=f"{path}#{i}" if len(docs) > 1 else str(path))
        found.append((doc["kind"], doc["metadata"]["name"]))
    return found


# --- helpers --------------------------------------------------------------------------------------------


def _show(value: Any, limit: int = 80) -> str:
    """A value as JSON (what a YAML author recognises), cut to `limit` characters."""
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _path(parts: Sequence[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def _unknown_keys(where: Sequence[Any], found: dict[str, Any], allowed: Sequence[str]) -> Iterator[str]:
    for key in found:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            yield f"{_path([*where, key])}: unknown field{hint}; allowed: {', '.join(sorted(allowed))}"


def _check_top_level(doc: dict[str, Any], strict: bool) -> Iterator[str]:
    if "spec" not in doc:
        yield "spec: required field is missing"
    elif not isinstance(doc["spec"], dict):
        yield f"spec={_show(doc['spec'])}: allowed: a mapping"
    if strict:
        yield from _unknown_keys([], doc, ["apiVersion", "kind", "metadata", "spec"])


def _check_metadata(kind: str, meta: Any, strict: bool) -> Iterator[str]:
    if not isinstance(meta, dict):
        yield f"metadata={_show(meta)}: required, a mapping with at least `name`"
        return
    name, limit = meta.get("name"), MAX_NAME_CHARS[kind]
    if not isinstance(name, str) or not _DNS1035.fullmatch(name) or len(name) > limit:
        yield (
            f"metadata.name={_show(name)}: not a DNS-1035 label of at most {limit} characters for a {kind}; "
            f"allowed: lower-case letters, digits and '-', starting with a letter and ending with a letter or digit"
        )
    namespace = meta.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not _DNS1123.fullmatch(namespace)):
        yield f"metadata.namespace={_show(namespace)}: not a DNS-1123 label"
    for field in ("labels", "annotations"):
        value = meta.get(field) or {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            yield f"metadata.{field}={_show(value)}: allowed: a mapping of strings to strings"
    if strict:
        yield from _unknown_keys(["metadata"], meta, METADATA_FIELDS)


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
            what = ", ".join(f"{k}={_show(v)}" for k, v in ident.items()) if by_key else _show(ident)
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


@functools.lru_cache(maxsize=16)
def _validator(path: str, strict: bool) -> Any:
    return _K8sValidator(_prepare(_read_schema(path)["properties"]["spec"], strict), format_checker=_FORMATS)


def _schema_problems(spec: Any, validator: Any) -> Iterator[str]:
    errors = sorted(validator.iter_errors(spec), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        where = ["spec", *error.absolute_path]
        at = f"{_path(where)}={_show(error.instance)}"
        kw, rule, sub = error.validator, error.validator_value, error.schema
        if kw == "additionalProperties" and rule is False:
            yield from _unknown_keys(where, error.instance, list(sub.get("properties", {})))
        elif kw == "required":
            for key in rule:
                if key not in error.instance:
                    yield f"{_path([*where, key])}: required field is missing"
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


def _groups(kind: str, spec: dict[str, Any]) -> Iterator[tuple[list[Any], dict[str, Any]]]:
    """(path, group spec) of the head group and each worker group of the cluster a manifest describes."""
    key = {"RayCluster": None, "RayJob": "rayClusterSpec", "RayService": "rayClusterConfig"}[kind]
    cluster = spec.get(key) if key else spec
    if not isinstance(cluster, dict):
        return
    base = ["spec", key] if key else ["spec"]
    yield [*base, "headGroupSpec"], cluster["headGroupSpec"]
    for i, group in enumerate(cluster.get("workerGroupSpecs", [])):
        yield [*base, "workerGroupSpecs", i], group


def _operator_problems(kind: str, spec: dict[str, Any], strict: bool) -> Iterator[str]:
    """Rules of the KubeRay operator (validation.go, webhooks) that the CRD schema does not express."""
    group_names: set[str] = set()
    for where, group in _groups(kind, spec):
        if where[-2] == "workerGroupSpecs":  # webhooks/v1/raycluster_webhook.go: validateWorkerGroups
            if group["groupName"] in group_names:
                yield f"{_path([*where, 'groupName'])}={_show(group['groupName'])}: worker group names must be unique"
            group_names.add(group["groupName"])
        if not group["template"].get("spec", {}).get("containers"):
            yield f"{_path([*where, 'template', 'spec', 'containers'])}: allowed: at least one container"
        params = group.get("rayStartParams", {})
        if group.get("resources") and any(params.get(p) for p in RAY_START_RESOURCE_PARAMS):
            yield (
                f"{_path([*where, 'resources'])}={_show(group['resources'])}: set either `resources` or "
                f"rayStartParams {', '.join(RAY_START_RESOURCE_PARAMS)}, not both"
            )
        if "labels" in params:
            yield f"{_path([*where, 'rayStartParams', 'labels'])}: not supported; use {_path([*where, 'labels'])}"
    if kind == "RayJob":
        if "rayClusterSpec" not in spec and not spec.get("clusterSelector"):
            yield "spec: one of rayClusterSpec or clusterSelector is required"
        mode = spec.get("submissionMode")
        if mode not in SUBMISSION_MODES:
            yield f"spec.submissionMode={_show(mode)}: allowed: {', '.join(SUBMISSION_MODES)}"
        if spec.get("activeDeadlineSeconds", 1) <= 0:
            yield f"spec.activeDeadlineSeconds={spec['activeDeadlineSeconds']}: allowed: > 0 (seconds)"
        for field in ("backoffLimit", "ttlSecondsAfterFinished"):
            if spec.get(field, 0) < 0:
                yield f"spec.{field}={spec[field]}: allowed: >= 0"
        if spec.get("suspend") and not spec.get("shutdownAfterJobFinishes"):
            yield "spec.suspend=true: allowed only with shutdownAfterJobFinishes: true"
        if "runtimeEnvYAML" in spec:
            yield from _yaml_mapping_problems("spec.runtimeEnvYAML", spec["runtimeEnvYAML"])
    if kind == "RayService" and "serveConfigV2" in spec:
        yield from _serve_config_problems(spec["serveConfigV2"], strict)


def _yaml_mapping_problems(where: str, text: str) -> Iterator[str]:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        yield f"{where}: not valid YAML: {str(e).splitlines()[0]}"
        return
    if not isinstance(value, dict):
        yield f"{where}={_show(text)}: allowed: a YAML mapping"


def _serve_config_problems(text: str, strict: bool) -> Iterator[str]:
    """`serveConfigV2` (a YAML string) against `ray.serve.schema.ServeDeploySchema` (imports Ray lazily)."""
    where = "spec.serveConfigV2"  # paths below continue inside the parsed YAML
    problems = list(_yaml_mapping_problems(where, text))
    if problems:
        yield from problems
        return
    config = yaml.safe_load(text)
    try:
        from ray.serve.schema import DeploymentSchema, ServeApplicationSchema, ServeDeploySchema
    except ImportError as e:
        raise ImportError(f"checking {where} needs ray[serve] (pip install -e '.[serving]'): {e}") from e
    try:
        ServeDeploySchema.model_validate(config)
    except ValidationError as e:
        for err in e.errors():
            yield f"{_path(['spec', 'serveConfigV2', *err['loc']])}: {err['msg']}"
        return
    for i, app in enumerate(config.get("applications") or []):
        yield from _import_path_problems(["spec", "serveConfigV2", "applications", i, "import_path"], app)
    if strict:  # Serve ignores unknown keys; a misspelled `num_replica` would be dropped silently
        root = ["spec", "serveConfigV2"]
        yield from _unknown_serve_keys(root, config, ServeDeploySchema)
        for i, app in enumerate(config.get("applications") or []):
            yield from _unknown_serve_keys([*root, "applications", i], app, ServeApplicationSchema)
            for j, dep in enumerate(app.get("deployments") or []):
                yield from _unknown_serve_keys(
                    [*root, "applications", i, "deployments", j], dep, DeploymentSchema
                )


def _import_path_problems(where: list[Any], app: dict[str, Any]) -> Iterator[str]:
    """An application's `import_path` (`module:attribute` or `module.attribute`) names something that exists.

    The module is imported (as Serve does on the cluster, in the image), so a typo fails here, not in the pod.
    """
    import importlib.util

    path = str(app.get("import_path", ""))
    module, sep, attr = path.partition(":") if ":" in path else path.rpartition(".")
    at = f"{_path(where)}={_show(path)}"
    try:
        spec = importlib.util.find_spec(module) if module else None
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        yield f"{at}: module {module!r} not found (allowed: an importable `module:attribute`, e.g. services.app:build_router_app)"
        return
    try:
        found = importlib.import_module(module)
    except Exception as e:  # the module exists but fails to import: the pod would fail the same way
        yield f"{at}: importing {module!r} fails: {type(e).__name__}: {e}"
        return
    if not hasattr(found, attr):
        builders = sorted(n for n in dir(found) if n.startswith("build_") or n == "app")
        yield f"{at}: {module!r} has no attribute {attr!r}; it has: {', '.join(builders) or 'no builders'}"


def _unknown_serve_keys(where: list[Any], found: Any, model: Any) -> Iterator[str]:
    if isinstance(found, dict):
        allowed = [n for name, f in model.model_fields.items() for n in (name, f.alias) if n]
        yield from _unknown_keys(where, found, allowed)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m cluster.kuberay_validate FILE...`: validate each file; exit code 0 if all are valid, else 2."""
    parser = argparse.ArgumentParser(
        prog="python -m cluster.kuberay_validate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("files", nargs="+", type=Path, help="KubeRay manifest YAML files")
    parser.add_argument("--no-strict", action="store_true", help="ignore fields the schema does not list")
    args = parser.parse_args(argv)
    status = 0
    for path in args.files:
        try:
            for kind, name in validate_file(path, strict=not args.no_strict):
                print(f"ok {path} ({kind} {name})")
        except ConfigError as e:
            print(f"error {e}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
