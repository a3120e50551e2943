"""Offline validation of a directory of KubeRay manifests tied together by a `kustomization.yaml`.

`validate_dir` checks what `kubectl apply -k DIR` would send to the API server, without a cluster:

- `kustomization.yaml` (if present): `apiVersion: kustomize.config.k8s.io/v1beta1`, `kind: Kustomization`,
  known top-level fields only, every `resources` entry a file of the directory, every manifest file listed
  (an unlisted file would silently not be applied), `namespace` a DNS-1123 label;
- every other `*.yaml`/`*.yml`: each document with `cluster.kuberay_validate.validate_manifest` (KubeRay v1.7.0 CRD
  schemas, defaults applied, nulls dropped, strict; DNS-1035 names; `serveConfigV2` with Ray Serve's
  `ServeDeploySchema` and importable import paths; containers' env / Secret references and the `NetworkPolicy`
  against the Kubernetes schemas vendored in `k8s/schemas/`);
- optionally each RayJob's `entrypoint`, with a caller-supplied check (the `modelsat` command line parses it).

Every problem of every file is reported, not just the first.

Docs: https://kubectl.docs.kubernetes.io/references/kustomize/kustomization/
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import yaml

from cluster.kuberay_validate import validate_manifest
from modelsat.errors import ConfigError

__all__ = ["KUSTOMIZATION_FIELDS", "validate_dir"]

KUSTOMIZATION_FIELDS = (
    "apiVersion kind metadata resources namespace namePrefix nameSuffix labels commonLabels commonAnnotations "
    "patches images components configMapGenerator secretGenerator generatorOptions replacements"
).split()
"""Top-level fields of a Kustomization this validator accepts (a subset of kustomize's)."""

_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _kustomization_problems(path: Path, files: list[str]) -> list[str]:
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        return [f"{path}: not valid YAML: {str(e).splitlines()[0]}"]
    if not isinstance(doc, dict):
        return [f"{path}: expected a mapping, got {type(doc).__name__}"]
    problems = []
    if doc.get("apiVersion") != "kustomize.config.k8s.io/v1beta1":
        problems.append(
            f"{path}: apiVersion={doc.get('apiVersion')!r}; allowed: kustomize.config.k8s.io/v1beta1"
        )
    if doc.get("kind") != "Kustomization":
        problems.append(f"{path}: kind={doc.get('kind')!r}; allowed: Kustomization")
    for key in doc:
        if key not in KUSTOMIZATION_FIELDS:
            problems.append(f"{path}: {key}: unknown field; allowed: {', '.join(KUSTOMIZATION_FIELDS)}")
    ns = doc.get("namespace")
    if ns is not None and (not isinstance(ns, str) or not _DNS1123.fullmatch(ns)):
        problems.append(f"{path}: namespace={ns!r}: not a DNS-1123 label")
    resources = doc.get("resources") or []
    if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
        return [*problems, f"{path}: resources={resources!r}: allowed: a list of file names"]
    for r in resources:
        if "://" not in r and not (path.parent / r).exists():
            problems.append(f"{path}: resources entry {r!r} does not exist in {path.parent}")
    for f in files:
        if f not in resources:
            problems.append(f"{path}: {f} is not listed in resources (kubectl apply -k would skip it)")
    return problems


def validate_dir(
    directory: str | Path,
    strict: bool = True,
    check_entrypoint: Callable[[str], str | None] | None = None,
) -> list[tuple[str, str, str]]:
    """Validate every manifest of a directory (see the module docstring).

    Args:
        directory: the directory (e.g. the output of `modelsat k8s render`).
        strict: reject fields the schemas do not list.
        check_entrypoint: called with each RayJob's `entrypoint`; returns a problem or None.
    Returns:
        `(file name, kind, metadata.name)` of each manifest, in file order.
    Raises:
        ConfigError: listing every problem of every file.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory (expected the output of `modelsat k8s render`)")
    paths = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))
    kustomization = [p for p in paths if p.name in ("kustomization.yaml", "kustomization.yml")]
    manifests = [p for p in paths if p not in kustomization]
    if not manifests:
        raise ConfigError(f"{directory}: no *.yaml manifest found")
    problems: list[str] = []
    if kustomization:
        problems += _kustomization_problems(kustomization[0], [p.name for p in manifests])
    found: list[tuple[str, str, str]] = []
    for path in manifests:
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as e:
            problems.append(f"{path}: not valid YAML: {str(e).splitlines()[0]}")
            continue
        for i, doc in enumerate(docs):
            source = f"{path}#{i}" if len(docs) > 1 else str(path)
            try:
                validate_manifest(doc, strict=strict, source=source)
            except ConfigError as e:
                problems.append(str(e))
                continue
            found.append((path.name, doc["kind"], doc["metadata"]["name"]))
            entry = doc["spec"].get("entrypoint") if doc["kind"] == "RayJob" else None
            if entry is not None and check_entrypoint is not None:
                problem = check_entrypoint(entry)
                if problem:
                    problems.append(f"{source}: RayJob {doc['metadata']['name']}: spec.entrypoint: {problem}")
    if problems:
        raise ConfigError(
            f"{directory}: {len(problems)} problem(s):\n" + "\n".join(f"- {p}" for p in problems)
        )
    return found
