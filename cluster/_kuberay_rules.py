"""Rules of the Kubernetes API server and the KubeRay operator that a CRD's `spec` schema does not express.

- `check_top_level`: a manifest holds `apiVersion`, `kind`, `metadata` and a `spec` mapping, nothing else;
- `check_metadata`: `metadata.name` a DNS-1035 label of at most `MAX_NAME_CHARS[kind]` characters, the
  namespace a DNS-1123 label, labels/annotations strings, only fields a manifest may set;
- `operator_problems`: per head/worker group (unique group names, a container, `resources` or the
  `rayStartParams` resource flags, no `rayStartParams.labels`), RayJob fields (`rayClusterSpec` or
  `clusterSelector`, `submissionMode`, deadlines, `suspend`, `runtimeEnvYAML`), and a RayService's
  `serveConfigV2` against Ray Serve's own `ServeDeploySchema` (Ray imported lazily, for RayService only).

Used by `cluster.kuberay_validate` (which documents the checks and their sources).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml
from pydantic import ValidationError

from cluster._kuberay_schema import json_path, show, unknown_keys

__all__ = [
    "MAX_NAME_CHARS",
    "METADATA_FIELDS",
    "RAY_START_RESOURCE_PARAMS",
    "SUBMISSION_MODES",
    "check_metadata",
    "check_top_level",
    "operator_problems",
]

MAX_NAME_CHARS = {"RayCluster": 63, "RayJob": 47, "RayService": 47}
SUBMISSION_MODES = ("K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode")
# ObjectMeta fields a manifest may set; the others (uid, resourceVersion, ...) are written by the server.
METADATA_FIELDS = tuple("annotations finalizers generateName labels name namespace ownerReferences".split())
RAY_START_RESOURCE_PARAMS = ("num-cpus", "num-gpus", "memory", "resources")

_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def check_top_level(doc: dict[str, Any], strict: bool) -> Iterator[str]:
    """Problems of a manifest's top level: a `spec` mapping; in strict mode, no fields but the four of an object.

    Args:
        doc: the manifest, as parsed from YAML.
        strict: also report unknown top-level fields (e.g. `status`).
    Returns:
        One line per problem.
    """
    if "spec" not in doc:
        yield "spec: required field is missing"
    elif not isinstance(doc["spec"], dict):
        yield f"spec={show(doc['spec'])}: allowed: a mapping"
    if strict:
        yield from unknown_keys([], doc, ["apiVersion", "kind", "metadata", "spec"])


def check_metadata(kind: str, meta: Any, strict: bool) -> Iterator[str]:
    """Problems of `metadata`: the name (DNS-1035, at most `MAX_NAME_CHARS[kind]` characters), namespace, labels.

    Args:
        kind: one of `MAX_NAME_CHARS`.
        meta: the manifest's `metadata`, as written (any type).
        strict: also report fields a manifest may not set (`METADATA_FIELDS` lists the allowed ones).
    Returns:
        One line per problem.
    """
    if not isinstance(meta, dict):
        yield f"metadata={show(meta)}: required, a mapping with at least `name`"
        return
    name, limit = meta.get("name"), MAX_NAME_CHARS[kind]
    if not isinstance(name, str) or not _DNS1035.fullmatch(name) or len(name) > limit:
        yield (
            f"metadata.name={show(name)}: not a DNS-1035 label of at most {limit} characters for a {kind}; "
            f"allowed: lower-case letters, digits and '-', starting with a letter and ending with a letter or digit"
        )
    namespace = meta.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not _DNS1123.fullmatch(namespace)):
        yield f"metadata.namespace={show(namespace)}: not a DNS-1123 label"
    for field in ("labels", "annotations"):
        value = meta.get(field) or {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            yield f"metadata.{field}={show(value)}: allowed: a mapping of strings to strings"
    if strict:
        yield from unknown_keys(["metadata"], meta, METADATA_FIELDS)


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


def operator_problems(kind: str, spec: dict[str, Any], strict: bool) -> Iterator[str]:
    """Rules of the KubeRay operator (validation.go, webhooks) that the CRD schema does not express.

    Args:
        kind: one of `MAX_NAME_CHARS`.
        spec: the manifest's `spec`, defaulted and valid against the CRD schema (its shape is assumed).
        strict: also report keys Ray Serve would ignore in a RayService's `serveConfigV2`.
    Returns:
        One line per problem.
    Raises:
        ImportError: for a RayService's `serveConfigV2`, if Ray Serve is not installed.
    """
    group_names: set[str] = set()
    for where, group in _groups(kind, spec):
        if where[-2] == "workerGroupSpecs":  # webhooks/v1/raycluster_webhook.go: validateWorkerGroups
            if group["groupName"] in group_names:
                yield f"{json_path([*where, 'groupName'])}={show(group['groupName'])}: worker group names must be unique"
            group_names.add(group["groupName"])
        if not group["template"].get("spec", {}).get("containers"):
            yield f"{json_path([*where, 'template', 'spec', 'containers'])}: allowed: at least one container"
        params = group.get("rayStartParams", {})
        if group.get("resources") and any(params.get(p) for p in RAY_START_RESOURCE_PARAMS):
            yield (
                f"{json_path([*where, 'resources'])}={show(group['resources'])}: set either `resources` or "
                f"rayStartParams {', '.join(RAY_START_RESOURCE_PARAMS)}, not both"
            )
        if "labels" in params:
            yield f"{json_path([*where, 'rayStartParams', 'labels'])}: not supported; use {json_path([*where, 'labels'])}"
    if kind == "RayJob":
        if "rayClusterSpec" not in spec and not spec.get("clusterSelector"):
            yield "spec: one of rayClusterSpec or clusterSelector is required"
        mode = spec.get("submissionMode")
        if mode not in SUBMISSION_MODES:
            yield f"spec.submissionMode={show(mode)}: allowed: {', '.join(SUBMISSION_MODES)}"
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
        yield f"{where}={show(text)}: allowed: a YAML mapping"


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
            yield f"{json_path(['spec', 'serveConfigV2', *err['loc']])}: {err['msg']}"
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
    at = f"{json_path(where)}={show(path)}"
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
        yield from unknown_keys(where, found, allowed)
