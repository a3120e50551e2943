"""Offline validation of KubeRay manifests (`RayJob`, `RayService`, `RayCluster`; `ray.io/v1`, KubeRay v1.7.0)
and of the Kubernetes core objects rendered with them (`NetworkPolicy`, `networking.k8s.io/v1`).

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
   for RayService only);
6. every container's `env` / `envFrom` (Secret keys by `secretKeyRef`; pod templates, the autoscaler sidecar,
   the RayJob submitter) against the upstream Kubernetes `EnvVar` / `EnvFromSource` JSON schemas, Secret names
   and keys, and no variable set twice in one container;
7. a `NetworkPolicy` (`CORE_KINDS`) against the upstream Kubernetes JSON schema (strict: unknown fields
   rejected) and the API server's NetworkPolicy rules (protocols, ports, `endPort`, `policyTypes`, CIDRs,
   label selectors), its name a DNS-1123 subdomain.

Not checked: CEL rules (`x-kubernetes-validations`, e.g. `deletionStrategy`) and Pod rules the core API
validates outside the CRD schema (e.g. a container's `image`).

Run as `python -m cluster.kuberay_validate k8s/*.yaml`: prints `ok <file> (<kind> <name>)` per manifest, or the
error, and exits 2 if any manifest is invalid.

Layout: `cluster._kuberay_schema` loads the CRD schemas, applies the server's defaults and checks `spec`
(1, 3, 4); `cluster._kuberay_rules` holds the name and operator rules (2, 5); `cluster._kuberay_core` the
Kubernetes core schemas vendored in `k8s/schemas/` (6, 7); this module holds the entry points
(`validate_manifest`, `validate_file`, the CLI `main`) and re-exports the schema helpers.

Sources:
    CRD schemas (`$MODELSAT_KUBERAY_SCHEMAS`, default `../shared/kuberay-schemas`), extracted from
        https://github.com/ray-project/kuberay/tree/v1.7.0/ray-operator/config/crd/bases
    Kubernetes core schemas (`$MODELSAT_K8S_SCHEMAS`, default `k8s/schemas`): Kubernetes v1.37.0, from the
        kubernetes-validate 1.37.0 package (k8s/schemas/README.md)
    operator rules: ray-operator/controllers/ray/utils/validation.go and constant.go
        (`MaxRayJobNameLength = MaxRayClusterNameLength - 6`), same tag
    pruning, defaulting, nullable, list types:
        https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/
    DNS-1035 label: https://kubernetes.io/docs/concepts/overview/working-with-objects/names/#rfc-1035-label-names
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from cluster._kuberay_core import CORE_KINDS, core_manifest_problems, pod_env_problems

# `X as X`: module-level names from before the split (not in __all__), still importable from here
from cluster._kuberay_rules import MAX_NAME_CHARS as MAX_NAME_CHARS
from cluster._kuberay_rules import METADATA_FIELDS as METADATA_FIELDS
from cluster._kuberay_rules import RAY_START_RESOURCE_PARAMS as RAY_START_RESOURCE_PARAMS
from cluster._kuberay_rules import SUBMISSION_MODES as SUBMISSION_MODES
from cluster._kuberay_rules import check_metadata, check_top_level, operator_problems
from cluster._kuberay_schema import (
    API_VERSION,
    KINDS,
    apply_defaults,
    load_schema,
    schema_dir,
    show,
    spec_problems,
)
from cluster._kuberay_schema import SCHEMA_DIR_ENV as SCHEMA_DIR_ENV
from modelsat.errors import ConfigError

__all__ = [
    "API_VERSION",
    "CORE_KINDS",
    "KINDS",
    "apply_defaults",
    "load_schema",
    "main",
    "schema_dir",
    "validate_file",
    "validate_manifest",
]


def validate_manifest(doc: dict[str, Any], strict: bool = True, source: str = "manifest") -> None:
    """Check one parsed KubeRay manifest, or a Kubernetes core one of `CORE_KINDS` (see the module docstring).

    Args:
        doc: the manifest, as parsed from YAML.
        strict: reject fields the schema does not list (misspellings) instead of ignoring them.
        source: where `doc` comes from, for the error message (e.g. `k8s/x.yaml#1`).
    Raises:
        ConfigError: naming, for each problem, the JSON path of the field, its value and what is allowed.
    """
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: a manifest is a mapping, got {show(doc)}")
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    if kind in CORE_KINDS:
        problems = core_manifest_problems(doc, strict)
    elif kind not in KINDS:
        allowed = ", ".join([*KINDS, *CORE_KINDS])
        raise ConfigError(f"{source}: kind={show(kind)}: not supported; allowed: {allowed}")
    elif api_version != API_VERSION:
        raise ConfigError(f"{source}: apiVersion={show(api_version)}: allowed: {API_VERSION}")
    else:
        schema = load_schema(kind)
        problems = [*check_top_level(doc, strict), *check_metadata(kind, doc.get("metadata"), strict)]
        if isinstance(doc.get("spec"), dict):
            spec = apply_defaults(doc["spec"], schema["properties"]["spec"])
            schema_problems = spec_problems(kind, spec, strict)
            problems += schema_problems
            if not schema_problems:  # the operator rules assume a spec of the right shape
                problems += operator_problems(kind, spec, strict)
                problems += pod_env_problems(spec, strict)
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


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m cluster.kuberay_validate FILE...`: validate each file; exit code 0 if all are valid, else 2."""
    parser = argparse.ArgumentParser(
        prog="python -m cluster.kuberay_validate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("files", nargs="+", type=Path, help="KubeRay (and NetworkPolicy) manifest YAML files")
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
