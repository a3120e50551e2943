"""The `NetworkPolicy` rendered with the RayService (`networkpolicy.yaml`, `kubernetes.network_policy`).

It selects the RayService's Ray pods and admits, from outside them, only the Serve HTTP port (`SERVE_PORT`),
plus the head's dashboard port (`DASHBOARD_PORT`) from the KubeRay operator's pods when `operator_access` is on
(the operator deploys `serveConfigV2` and reads its status through the dashboard). Traffic between the pods it
selects (GCS, raylets, object transfer, the autoscaler) is all allowed. Egress is not restricted.

Pods are selected by KubeRay's `ray.io/is-ray-node: "yes"` and our `SERVICE_LABEL` on the pod templates: KubeRay's
`ray.io/cluster` label of a RayService's pods is the generated `<name>-<suffix>` RayCluster name, which changes
with every new cluster of a zero-downtime upgrade, so a rendered policy cannot name it.

Sources: KubeRay v1.7.0 `ray-operator/controllers/ray/common/pod.go` (`labelPod`: the labels KubeRay sets, and
which pod-template labels it keeps), `networkpolicy_controller.go` (the same intra-cluster rule; operator access
left to the platform), the operator's pod labels in `helm-chart/kuberay-operator/templates/deployment.yaml` and
`ray-operator/config/manager/manager.yaml`; https://kubernetes.io/docs/concepts/services-networking/network-policies/ .
"""

from __future__ import annotations

from typing import Any

from cluster._kuberay_pods import DASHBOARD_PORT, SERVE_PORT, SERVICE_LABEL, object_meta
from modelsat.serving_config import ServingConfig

__all__ = ["RAY_NODE_LABEL", "network_policy"]

RAY_NODE_LABEL = ("ray.io/is-ray-node", "yes")
"""The label KubeRay puts on every Ray pod it creates."""


def network_policy(serving: ServingConfig, service: str) -> dict[str, Any]:
    """The RayService's NetworkPolicy (`networking.k8s.io/v1`), named `<service>-ray`.

    Args:
        serving: the serving config (`kubernetes.network_policy` enabled).
        service: the RayService's name (the value of `SERVICE_LABEL` on its pods).
    Returns:
        The NetworkPolicy manifest.
    """
    np = serving.kubernetes.network_policy

    def pods() -> dict[str, Any]:  # a fresh mapping each time (no YAML anchors in the output)
        return {"matchLabels": {RAY_NODE_LABEL[0]: RAY_NODE_LABEL[1], SERVICE_LABEL: service}}

    ingress: list[dict[str, Any]] = [
        {"from": [{"podSelector": pods()}]},  # Ray-internal: every port, between the RayService's own pods
        {"ports": [{"protocol": "TCP", "port": SERVE_PORT}]},  # Serve HTTP (the ingress) from anywhere
    ]
    if np.operator_access:
        namespaces: dict[str, Any] = (
            {"matchLabels": {"kubernetes.io/metadata.name": np.operator_namespace}}
            if np.operator_namespace
            else {}
        )
        operator = {
            "namespaceSelector": namespaces,
            "podSelector": {"matchLabels": dict(np.operator_pod_labels)},
        }
        ingress.append({"from": [operator], "ports": [{"protocol": "TCP", "port": DASHBOARD_PORT}]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_meta(f"{service}-ray", serving, "serving"),
        "spec": {"podSelector": pods(), "policyTypes": ["Ingress"], "ingress": ingress},
    }
