"""Kubernetes core objects next to the KubeRay ones: the `NetworkPolicy`, and env / Secret references in pod specs.

- `CORE_KINDS`: the non-KubeRay kinds `modelsat k8s render` writes (`NetworkPolicy`, `networking.k8s.io/v1`);
- `core_manifest_problems`: such a manifest against the upstream Kubernetes JSON schema (vendored in
  `k8s/schemas/`, strict: unknown fields rejected) plus the API server's own NetworkPolicy rules the schema
  does not express (protocol TCP/UDP/SCTP, ports 1-65535 or a port name, `endPort`, `policyTypes`, CIDRs,
  label selectors);
- `pod_env_problems`: every container's `env` (Secret keys by `secretKeyRef`) and `envFrom` in a KubeRay spec
  (head and worker pod templates, the autoscaler sidecar, the RayJob submitter) against the upstream `EnvVar` /
  `EnvFromSource` schemas, plus: a `secretKeyRef` names a Secret (DNS-1123 subdomain) and a valid key, and an
  entry has a `value` or a `valueFrom`, not both (one variable set twice: the CRD's list-map check).

Each problem is one line: JSON path, value, what is allowed (wording shared with `cluster._kuberay_schema`).

Sources:
    schemas (`$MODELSAT_K8S_SCHEMAS`, default `<repo>/k8s/schemas`): the Kubernetes v1.37.0 JSON schemas of
        the kubernetes-validate 1.37.0 package (`kubernetes-json-schema/v1.37.0-local-strict`), $refs resolved
        (k8s/schemas/README.md);
    NetworkPolicy rules: kubernetes/pkg/apis/networking/validation/validation.go (ValidateNetworkPolicyPort,
        ValidateNetworkPolicySpec, ValidateIPBlock); names and keys: k8s.io/apimachinery validation
        (IsDNS1123Subdomain, IsConfigMapKey, IsQualifiedName);
    https://kubernetes.io/docs/concepts/services-networking/network-policies/
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema

from cluster._kuberay_schema import json_path, show, unknown_keys
from modelsat.errors import ConfigError

__all__ = [
    "CORE_KINDS",
    "K8S_SCHEMA_DIR_ENV",
    "core_manifest_problems",
    "k8s_schema_dir",
    "pod_env_problems",
]

CORE_KINDS: dict[str, tuple[str, str]] = {
    "NetworkPolicy": ("networking.k8s.io/v1", "networkpolicy-networking-v1.json")
}
"""Supported Kubernetes core kinds: kind -> (apiVersion, schema file in `k8s_schema_dir()`)."""
K8S_SCHEMA_DIR_ENV = "MODELSAT_K8S_SCHEMAS"
_ENV_SCHEMAS = {"env": "envvar-v1.json", "envFrom": "envfromsource-v1.json"}
_METADATA_FIELDS = ("annotations", "labels", "name", "namespace")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # IANA_SVC_NAME, at most 15 characters
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_PROTOCOLS = ("TCP", "UDP", "SCTP")
_POLICY_TYPES = ("Ingress", "Egress")
_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def k8s_schema_dir() -> Path:
    """Directory of the vendored Kubernetes schemas: `$MODELSAT_K8S_SCHEMAS`, else `<repo>/k8s/schemas`."""
    env = os.environ.get(K8S_SCHEMA_DIR_ENV)
    return Path(env) if env else Path(__file__).resolve().parent.parent / "k8s" / "schemas"


@functools.lru_cache(maxsize=16)
def _validator(name: str, strict: bool, where: str) -> Any:
    path = Path(where) / name
    try:
        schema = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise ConfigError(
            f"Kubernetes schema {path} not found; set ${K8S_SCHEMA_DIR_ENV} to the directory holding "
            f"{', '.join([f for _, f in CORE_KINDS.values()] + list(_ENV_SCHEMAS.values()))}"
        ) from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"Kubernetes schema {path} is not valid JSON: {e}") from e
    if not strict:
        schema = _open(schema)
    return jsonschema.Draft202012Validator(schema)


def _open(node: Any) -> Any:
    """The schema without `additionalProperties: false` (non-strict: unknown fields are pruned, not errors)."""
    if isinstance(node, list):
        return [_open(n) for n in node]
    if not isinstance(node, dict):
        return node
    return {k: _open(v) for k, v in node.items() if not (k == "additionalProperties" and v is False)}


def _schema_problems(instance: Any, name: str, strict: bool, where: list[Any]) -> Iterator[str]:
    validator = _validator(name, strict, str(k8s_schema_dir()))
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        path = [*where, *error.absolute_path]
        at = f"{json_path(path)}={show(error.instance)}"
        kw, rule, sub = error.validator, error.validator_value, error.schema
        if kw == "additionalProperties" and rule is False:
            yield from unknown_keys(path, error.instance, list(sub.get("properties", {})))
        elif kw == "required":
            yield from (
                f"{json_path([*path, k])}: required field is missing" for k in rule if k not in error.instance
            )
        elif kw == "type":
            kinds = [t for t in (rule if isinstance(rule, list) else [rule]) if t != "null"]
            yield f"{at}: expected {' or '.join(kinds)}"
        elif kw == "enum":
            yield f"{at}: allowed: {', '.join(map(str, rule))}"
        elif kw == "oneOf" and {json.dumps(s, sort_keys=True) for s in rule} == {
            '{"type": ["string", "null"]}',
            '{"type": ["integer", "null"]}',
        }:
            yield f"{at}: expected an integer or a string"
        else:
            yield f"{at}: {error.message}"


def _label_problems(where: list[Any], selector: Any) -> Iterator[str]:
    """A LabelSelector's keys, values and operators (the schema only says they are strings)."""
    if not isinstance(selector, dict):
        return
    for key, value in (selector.get("matchLabels") or {}).items():
        prefix, _, name = str(key).rpartition("/")
        if (
            not _LABEL_NAME.fullmatch(name)
            or len(name) > 63
            or (prefix and not _DNS1123_SUBDOMAIN.fullmatch(prefix))
        ):
            yield f"{json_path([*where, 'matchLabels', key])}: not a label key; allowed: [prefix/]name, name at most 63 characters"
        if not isinstance(value, str) or (value and (not _LABEL_NAME.fullmatch(value) or len(value) > 63)):
            yield f"{json_path([*where, 'matchLabels', key])}={show(value)}: not a label value; allowed: at most 63 alphanumerics, '-', '_', '.'"
    for i, req in enumerate(selector.get("matchExpressions") or []):
        if isinstance(req, dict) and req.get("operator") not in _SELECTOR_OPERATORS:
            yield f"{json_path([*where, 'matchExpressions', i, 'operator'])}={show(req.get('operator'))}: allowed: {', '.join(_SELECTOR_OPERATORS)}"


def _port_problems(where: list[Any], port: dict[str, Any]) -> Iterator[str]:
    protocol, number, end = port.get("protocol", "TCP"), port.get("port"), port.get("endPort")
    if protocol not in _PROTOCOLS:
        yield f"{json_path([*where, 'protocol'])}={show(protocol)}: allowed: {', '.join(_PROTOCOLS)}"
    if isinstance(number, int) and not 1 <= number <= 65535:
        yield f"{json_path([*where, 'port'])}={number}: out of range; allowed: 1-65535 or a port name"
    if isinstance(number, str) and (not _PORT_NAME.fullmatch(number) or len(number) > 15 or number.isdigit()):
        yield f"{json_path([*where, 'port'])}={show(number)}: not a port name; allowed: 1-65535 or a name of at most 15 lower-case letters, digits and '-'"
    if end is not None and (not isinstance(number, int) or (isinstance(end, int) and end < number)):
        yield f"{json_path([*where, 'endPort'])}={show(end)}: allowed: only with a numeric port, and >= port"


def _peer_problems(where: list[Any], peer: dict[str, Any]) -> Iterator[str]:
    for field in ("podSelector", "namespaceSelector"):
        yield from _label_problems([*where, field], peer.get(field))
    block = peer.get("ipBlock")
    if isinstance(block, dict) and isinstance(block.get("cidr"), str):
        try:
            net = ipaddress.ip_network(block["cidr"], strict=False)
        except ValueError:
            yield f"{json_path([*where, 'ipBlock', 'cidr'])}={show(block['cidr'])}: not a CIDR; allowed: e.g. 10.0.0.0/8"
            return
        for i, cidr in enumerate(block.get("except") or []):
            try:
                inside = ipaddress.ip_network(cidr, strict=False).subnet_of(net)  # type: ignore[arg-type]
            except (ValueError, TypeError):
                inside = False
            if not inside:
                yield f"{json_path([*where, 'ipBlock', 'except', i])}={show(cidr)}: allowed: a CIDR inside {net}"


def _network_policy_rules(spec: dict[str, Any]) -> Iterator[str]:
    """The API server's NetworkPolicy rules (validation.go) on a spec that already matches the schema."""
    yield from _label_problems(["spec", "podSelector"], spec.get("podSelector"))
    for i, kind in enumerate(spec.get("policyTypes") or []):
        if kind not in _POLICY_TYPES:
            yield f"spec.policyTypes[{i}]={show(kind)}: allowed: {', '.join(_POLICY_TYPES)}"
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or []):
            for j, port in enumerate(rule.get("ports") or []):
                yield from _port_problems(["spec", direction, i, "ports", j], port)
            for j, peer in enumerate(rule.get(peers) or []):
                yield from _peer_problems(["spec", direction, i, peers, j], peer)


def core_manifest_problems(doc: dict[str, Any], strict: bool = True) -> list[str]:
    """Every problem of one Kubernetes core manifest (a kind of `CORE_KINDS`), as the API server would see it.

    Args:
        doc: the manifest, as parsed from YAML (`doc["kind"]` in `CORE_KINDS`).
        strict: reject fields the schema does not list instead of ignoring them.
    Returns:
        One line per problem (JSON path, value, what is allowed); empty if the manifest is valid.
    Raises:
        ConfigError: if the vendored schema is missing or not JSON.
    """
    kind = doc["kind"]
    api_version, schema = CORE_KINDS[kind]
    problems = []
    if doc.get("apiVersion") != api_version:
        problems.append(f"apiVersion={show(doc.get('apiVersion'))}: allowed: {api_version}")
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or len(name) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(name):
        problems.append(
            f"metadata.name={show(name)}: not a DNS-1123 subdomain of at most 253 characters for a {kind}; "
            "allowed: lower-case letters, digits, '-' and '.'"
        )
    if strict and isinstance(meta, dict):
        problems += unknown_keys(["metadata"], meta, _METADATA_FIELDS)
    if "spec" not in doc:
        problems.append("spec: required field is missing")
    if isinstance(meta, dict):  # unknown metadata fields are reported above, once
        meta = {k: v for k, v in meta.items() if k in _METADATA_FIELDS}
    body = {**doc, "metadata": meta}
    schema_problems = list(_schema_problems(copy.deepcopy(body), schema, strict, []))
    problems += schema_problems
    if not schema_problems and kind == "NetworkPolicy" and isinstance(doc.get("spec"), dict):
        problems += _network_policy_rules(doc["spec"])
    return problems


def _containers(spec: dict[str, Any]) -> Iterator[tuple[list[Any], dict[str, Any]]]:
    """(path, container) of every container a KubeRay spec declares (pod templates, autoscaler, submitter)."""

    def walk(node: Any, path: list[Any]) -> Iterator[tuple[list[Any], dict[str, Any]]]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    for i, c in enumerate(value):
                        if isinstance(c, dict):
                            yield [*path, key, i], c
                elif key == "autoscalerOptions" and isinstance(value, dict):
                    yield [*path, key], value
                elif key != "serveConfigV2":
                    yield from walk(value, [*path, key])
        elif isinstance(node, list):
            for i, item in enumerate(node):
                yield from walk(item, [*path, i])

    yield from walk(spec, ["spec"])


def pod_env_problems(spec: dict[str, Any], strict: bool = True) -> list[str]:
    """Every problem of the `env` / `envFrom` entries of the containers in a KubeRay manifest's `spec`.

    Args:
        spec: the manifest's `spec` (already valid against the CRD schema).
        strict: reject fields the upstream schemas do not list.
    Returns:
        One line per problem (JSON path, value, what is allowed); empty if all are valid.
    Raises:
        ConfigError: if a vendored schema is missing or not JSON.
    """
    problems: list[str] = []
    for where, container in _containers(spec):
        for field, schema in _ENV_SCHEMAS.items():
            for i, entry in enumerate(container.get(field) or []):
                at = [*where, field, i]
                found = list(_schema_problems(entry, schema, strict, at))
                problems += found
                if found or not isinstance(entry, dict):
                    continue
                if field == "env" and entry.get("value") and entry.get("valueFrom"):
                    problems.append(
                        f"{json_path(at)}: both value and valueFrom; allowed: one of them (validation.go)"
                    )
                ref = (entry.get("valueFrom") or {}).get("secretKeyRef") or entry.get("secretRef")
                if isinstance(ref, dict):
                    sub = "valueFrom.secretKeyRef" if field == "env" else "secretRef"
                    secret = ref.get("name")
                    if (
                        not isinstance(secret, str)
                        or len(secret) > 253
                        or not _DNS1123_SUBDOMAIN.fullmatch(secret)
                    ):
                        problems.append(
                            f"{json_path(at)}.{sub}.name={show(secret)}: not a Secret name; allowed: a DNS-1123 "
                            "subdomain (lower-case letters, digits, '-', '.')"
                        )
                    key = ref.get("key")
                    if field == "env" and (
                        not isinstance(key, str) or len(key) > 253 or not _SECRET_KEY.fullmatch(key)
                    ):
                        problems.append(
                            f"{json_path(at)}.{sub}.key={show(key)}: not a Secret key; allowed: letters, digits, "
                            "'-', '_', '.'"
                        )
    return problems
