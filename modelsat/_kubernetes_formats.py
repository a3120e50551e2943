"""Formats of Kubernetes values the `kubernetes` section checks: object names and resource quantities.

Kubernetes quantities (`cpu: "4"`, `memory: 16Gi`) follow
https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/ ; names follow the DNS-1123
label and subdomain rules of https://kubernetes.io/docs/concepts/overview/working-with-objects/names/ .
Re-exported by `modelsat.kubernetes_config`.
"""

from __future__ import annotations

import re

__all__ = [
    "CPU_QUANTITY",
    "DNS1123_LABEL",
    "DNS1123_SUBDOMAIN",
    "MEMORY_QUANTITY",
    "cpu_quantity",
    "memory_bytes",
]

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
CPU_QUANTITY = r"^([0-9]+(\.[0-9]+)?|[0-9]+m)$"
MEMORY_QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_UNITS |= {f"{u}i": 2 ** (10 * (i + 1)) for i, u in enumerate("KMGTPE")}


def cpu_quantity(value: str) -> float:
    """CPUs in a Kubernetes CPU quantity (`"4"` → 4.0, `"500m"` → 0.5).

    Raises:
        ValueError: `value` is not a plain or milli CPU quantity.
    """
    if not re.fullmatch(CPU_QUANTITY, value):
        raise ValueError(f"cpu={value!r} is not a CPU quantity; allowed: e.g. 4, 2.5, 500m")
    return int(value[:-1]) / 1000 if value.endswith("m") else float(value)


def memory_bytes(value: str) -> float:
    """Bytes in a Kubernetes memory quantity (`"8Gi"` → 8 * 2**30, `"500M"` → 5e8).

    Raises:
        ValueError: `value` is not a memory quantity (a number with an optional Ki..Ei or k..E suffix).
    """
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)", value)
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"memory={value!r} is not a memory quantity; allowed: e.g. 512Mi, 16Gi, 8G")
    return float(m.group(1)) * _UNITS[m.group(2)]
