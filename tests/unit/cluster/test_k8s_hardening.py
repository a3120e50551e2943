"""Issue 18: the hardening of the rendered KubeRay manifests (cluster.kuberay_render, modelsat.kubernetes_config).

NetworkPolicy, Ray token auth, securityContext, read-only mounts, Secrets by key, image and model revision
pinning, /dev/shm, and the strict offline check of the rendered set against the KubeRay CRD schemas and the
vendored Kubernetes schemas (k8s/schemas/). No Ray: the RayService's serveConfigV2 (Ray Serve's own schema) is
checked in tests/unit/test_kuberay_validate.py.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster._kuberay_core import pod_env_problems
from cluster._kuberay_schema import apply_defaults, load_schema, schema_dir, spec_problems
from cluster.kuberay_render import dump_manifest, render_manifests
from cluster.kuberay_validate import validate_manifest
from modelsat.errors import ConfigError
from modelsat.serving_config import ServingConfig

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "modelsat" / "configs" / "serving_gpu_example.yaml"
SERVICE = "zoo-svc"
TOKEN_SECRET = f"{SERVICE}-ray-auth"
COMMIT = "0123456789abcdef0123456789abcdef01234567"

pytestmark = pytest.mark.skipif(
    not schema_dir().is_dir(), reason=f"KubeRay CRD schemas not found at {schema_dir()}"
)


def _raw() -> dict[str, Any]:
    """A small zoo: a CPU group (ingress, router), a GPU group (one vLLM hub model), data and storage PVCs."""
    return {
        "name": "zoo",
        "ingress": {"auth_token_env": "MODELSAT_API_KEY", "resources": {"num_cpus": 1}},
        "router": {
            "checkpoint": "/models/router",
            "registry": "/models/registry",
            "resources": {"num_cpus": 1},
        },
        "models": [
            {
                "name": "m1",
                "engine": {"kind": "vllm", "model_path": "org/m1", "engine_args": {"dtype": "bfloat16"}},
                "resources": {"num_cpus": 4, "num_gpus": 1},
                "autoscaling": {"min_replicas": 1, "max_replicas": 1},
            }
        ],
        "kubernetes": {
            "service_name": SERVICE,
            "image": "ghcr.io/org/modelsat:0.1.0",
            "worker_groups": [
                {"name": "cpu", "cpu": "4", "memory": "16Gi", "max_replicas": 4},
                {"name": "gpu", "gpus": 1, "cpu": "8", "memory": "32Gi", "max_replicas": 3},
            ],
            "volumes": [
                {"name": "data", "claim_name": "zoo-data", "mount_path": "/data", "read_only": True},
                {"name": "storage", "claim_name": "zoo-storage", "mount_path": "/models"},
            ],
            "secret_env": [
                {"env": "MODELSAT_API_KEY", "secret": "zoo-api-key", "used_by": ["serving", "aptitude"]},
                {"env": "HF_TOKEN", "secret": "zoo-hf", "optional": True, "used_by": ["serving", "training"]},
            ],
            "training": {"data": "/data/zoo", "workers": 1, "storage_path": "/models/ray-train"},
        },
    }


def _render(change=None, **kwargs) -> dict[str, dict[str, Any]]:
    raw = _raw()
    if change is not None:
        change(raw)
    return render_manifests(ServingConfig.from_dict(raw, source="test"), **kwargs)


def _k8s(**fields):
    return lambda raw: raw["kubernetes"].update(fields)


def _cluster(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["rayClusterConfig" if doc["kind"] == "RayService" else "rayClusterSpec"]


def _pods(files: dict[str, dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """(file, head or worker group name or `submitter`, pod spec) of every rendered pod template."""
    out = []
    for name, doc in files.items():
        if doc["kind"] not in ("RayService", "RayJob"):
            continue
        cluster = _cluster(doc)
        out.append((name, "head", cluster["headGroupSpec"]["template"]["spec"]))
        out += [(name, g["groupName"], g["template"]["spec"]) for g in cluster["workerGroupSpecs"]]
        if doc["kind"] == "RayJob":
            out.append((name, "submitter", doc["spec"]["submitterPodTemplate"]["spec"]))
    return out


def _pod(files, file: str, group: str) -> dict[str, Any]:
    return next(spec for f, g, spec in _pods(files) if (f, g) == (file, group))


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _mounts(pod: dict[str, Any]) -> dict[str, bool]:
    return {m["mountPath"]: m.get("readOnly", False) for m in pod["containers"][0].get("volumeMounts", [])}


def _rejected(change, pattern: str, **kwargs) -> None:
    with pytest.raises(ConfigError) as e:
        _render(change, **kwargs)
    assert re.search(pattern, " ".join(str(e.value).split())), str(e.value)


# 1. NetworkPolicy ------------------------------------------------------------------------------------------
def test_network_policy_admits_only_the_serve_port_from_outside_the_ray_pods():
    files = _render()
    policy = files["networkpolicy.yaml"]
    assert files["kustomization.yaml"]["resources"][:2] == ["rayservice.yaml", "networkpolicy.yaml"]
    spec = policy["spec"]
    own = {"matchLabels": {"ray.io/is-ray-node": "yes", "modelsat.io/rayservice": SERVICE}}
    assert spec["podSelector"] == own and spec["policyTypes"] == ["Ingress"]
    cluster = _cluster(files["rayservice.yaml"])
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:  # the selector finds every pod
        assert group["template"]["metadata"]["labels"]["modelsat.io/rayservice"] == SERVICE
    internal, serve, operator = spec["ingress"]
    assert internal == {"from": [{"podSelector": own}]}  # Ray-internal: all ports, own pods only
    assert serve == {"ports": [{"protocol": "TCP", "port": 8000}]}  # from anywhere: the Serve port only
    assert operator["ports"] == [{"protocol": "TCP", "port": 8265}]
    assert operator["from"] == [
        {
            "namespaceSelector": {},
            "podSelector": {"matchLabels": {"app.kubernetes.io/component": "kuberay-operator"}},
        }
    ]

    closed = _render(_k8s(network_policy={"operator_access": False}))["networkpolicy.yaml"]["spec"]["ingress"]
    assert closed == [internal, serve]
    pinned = _render(_k8s(network_policy={"operator_namespace": "kuberay-system"}))["networkpolicy.yaml"]
    peer = pinned["spec"]["ingress"][2]["from"][0]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "kuberay-system"}}
    off = _render(_k8s(network_policy={"enabled": False}))
    assert (
        "networkpolicy.yaml" not in off and "networkpolicy.yaml" not in off["kustomization.yaml"]["resources"]
    )


# 2. Ray token auth -----------------------------------------------------------------------------------------
def test_ray_token_auth_env_comes_from_a_secret_key_ref_on_every_ray_container():
    files = _render()
    token = {"secretKeyRef": {"name": TOKEN_SECRET, "key": "auth_token"}}
    pods = _pods(files)
    assert len(pods) == 9  # RayService: head + 2 groups; each of the 2 RayJobs: head, workers, submitter
    for file, group, pod in pods:
        env = _env(pod["containers"][0])
        assert env["RAY_AUTH_MODE"] == {"name": "RAY_AUTH_MODE", "value": "token"}, (file, group)
        assert env["RAY_AUTH_TOKEN"] == {"name": "RAY_AUTH_TOKEN", "valueFrom": token}, (file, group)
    for doc in files.values():
        if doc["kind"] in ("RayService", "RayJob"):  # the operator, autoscaler and submitter use it too
            assert _cluster(doc)["authOptions"] == {"mode": "token", "secretName": TOKEN_SECRET}
    named = _render(_k8s(ray_auth={"secret_name": "ray-token"}))
    assert _env(_pod(named, "rayservice.yaml", "head")["containers"][0])["RAY_AUTH_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "ray-token", "key": "auth_token"}
    }
    off = _render(_k8s(ray_auth={"mode": "disabled"}))
    assert _cluster(off["rayservice.yaml"])["authOptions"] == {"mode": "disabled"}
    assert not any("RAY_AUTH_TOKEN" in _env(p["containers"][0]) for _, _, p in _pods(off))


def test_ray_token_auth_config_errors_name_the_value_and_what_is_allowed():
    _rejected(_k8s(ray_version="2.51.0"), r"ray_version='2\.51\.0': Ray token auth .* needs Ray >= 2\.52\.0")
    _rejected(_k8s(ray_auth={"secret_key": "token"}), r"ray_auth\.secret_key='token'.*'auth_token'")
    _rejected(
        _k8s(env={"RAY_AUTH_TOKEN": "x"}), r"kubernetes\.env\.RAY_AUTH_TOKEN: set by kubernetes\.ray_auth"
    )


# 3. securityContext ----------------------------------------------------------------------------------------
def _containers(files) -> list[tuple[str, dict[str, Any]]]:
    out = [(f"{f}:{g}", c) for f, g, pod in _pods(files) for c in pod["containers"]]
    out += [
        (f"{n}:autoscaler", _cluster(d)["autoscalerOptions"])
        for n, d in files.items()
        if d["kind"] == "RayService"
    ]
    return out


def test_every_container_and_pod_has_a_restricted_security_context():
    files = _render()
    containers = _containers(files)
    assert len(containers) == 10  # 9 pods + the RayService's autoscaler sidecar
    for where, c in containers:
        assert c["securityContext"] == {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }, where
    for file, group, pod in _pods(files):
        assert pod["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 100,
            "fsGroup": 100,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        }, (file, group)
    custom = _render(_k8s(security={"run_as_user": 2000, "run_as_group": 2000, "fs_group": None}))
    pod = _pod(custom, "rayservice.yaml", "gpu")["securityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"], "fsGroup" in pod) == (2000, 2000, False)
    _rejected(_k8s(security={"run_as_user": 0}), r"security\.run_as_user.*greater than or equal to 1")


# 4. read-only mounts ---------------------------------------------------------------------------------------
def test_shared_storage_is_read_only_except_on_the_pods_that_write_it():
    files = _render()
    svc, train, apt = "rayservice.yaml", "rayjob-train-router.yaml", "rayjob-aptitude-m1.yaml"
    for group in ("head", "cpu", "gpu"):  # the RayService only reads checkpoints, registry and data
        assert _mounts(_pod(files, svc, group)) == {"/data": True, "/models": True} | (
            {"/dev/shm": False} if group == "gpu" else {}
        ), group
    for file in (train, apt):  # training writes the router, the aptitude jobs the registry
        for group in ("head", "train" if file == train else "aptitude"):
            assert _mounts(_pod(files, file, group))["/models"] is False, (file, group)
            assert _mounts(_pod(files, file, group))["/data"] is True, (file, group)
    claims = {v["name"]: v["persistentVolumeClaim"]["readOnly"] for v in _pod(files, svc, "cpu")["volumes"]}
    assert claims == {"data": True, "storage": True}

    # a model cache on the volume: the groups a hub model can run on write it, the CPU group still only reads
    cached = _render(_k8s(env={"HF_HOME": "/models/hf-cache"}))
    assert _mounts(_pod(cached, svc, "gpu"))["/models"] is False
    assert _mounts(_pod(cached, svc, "cpu"))["/models"] is True
    assert _mounts(_pod(cached, svc, "head"))["/models"] is True

    def writers(value):
        return lambda raw: raw["kubernetes"]["volumes"][1].update(writers=value)

    explicit = _render(writers(["training", "cpu"]))
    assert _mounts(_pod(explicit, apt, "head"))["/models"] is True
    assert _mounts(_pod(explicit, svc, "cpu"))["/models"] is False
    _rejected(
        writers(["router"]),
        r"volume 'storage': writers \['router'\] unknown; allowed: serving, training, aptitude, cpu, gpu",
    )


# 5. Secrets by key -----------------------------------------------------------------------------------------
def test_secrets_come_by_key_only_on_the_pods_that_use_them_and_never_by_env_from():
    files = _render()
    text = "".join(dump_manifest(d, "test") for d in files.values())
    assert "envFrom" not in text
    api = {"secretKeyRef": {"name": "zoo-api-key", "key": "MODELSAT_API_KEY"}}
    hf = {"secretKeyRef": {"name": "zoo-hf", "key": "HF_TOKEN", "optional": True}}
    expected = {  # (file, pod) -> the Secret keys it gets
        ("rayservice.yaml", "head"): {},  # runs no replicas
        ("rayservice.yaml", "cpu"): {"MODELSAT_API_KEY": api, "HF_TOKEN": hf},
        ("rayservice.yaml", "gpu"): {"MODELSAT_API_KEY": api, "HF_TOKEN": hf},
        ("rayjob-train-router.yaml", "head"): {"HF_TOKEN": hf},
        ("rayjob-train-router.yaml", "train"): {"HF_TOKEN": hf},
        ("rayjob-train-router.yaml", "submitter"): {},
        ("rayjob-aptitude-m1.yaml", "head"): {"MODELSAT_API_KEY": api},
        ("rayjob-aptitude-m1.yaml", "aptitude"): {"MODELSAT_API_KEY": api},
        ("rayjob-aptitude-m1.yaml", "submitter"): {},
    }
    for file, group, pod in _pods(files):
        env = _env(pod["containers"][0])
        got = {k: e["valueFrom"] for k, e in env.items() if k != "RAY_AUTH_TOKEN" and "valueFrom" in e}
        assert got == expected[(file, group)], (file, group)

    def used_by(users):
        return lambda raw: raw["kubernetes"]["secret_env"][0].update(used_by=users)

    _rejected(
        used_by(["serving"]), r"ingress\.auth_token_env='MODELSAT_API_KEY': .* add aptitude to its used_by"
    )
    _rejected(used_by(["serving", "serving"]), r"used_by=\['serving', 'serving'\] repeats an entry")
    _rejected(used_by(["router"]), r"used_by.*Input should be 'serving', 'training' or 'aptitude'")
    legacy = _render(_k8s(secret_env=["zoo-secrets"]))  # the deprecated bare Secret name: envFrom, every pod
    assert _pod(legacy, "rayservice.yaml", "head")["containers"][0]["envFrom"] == [
        {"secretRef": {"name": "zoo-secrets"}}
    ]


# 6. image and model revision pinning -----------------------------------------------------------------------
def test_latest_or_untagged_image_is_refused_with_the_value_and_what_is_allowed():
    _rejected(
        _k8s(image="ghcr.io/org/modelsat:latest"),
        r"kubernetes\.image='ghcr\.io/org/modelsat:latest' is the mutable tag 'latest' "
        r"\(kubernetes\.image_pinning='tag'\); allowed: an explicit tag other than latest "
        r"\(e\.g\. ghcr\.io/org/modelsat:1\.2\.3\) or a digest \(ghcr\.io/org/modelsat@sha256:<64 hex digits>\)",
    )
    _rejected(
        _k8s(gpu_image="localhost:5000/modelsat"),
        r"kubernetes\.gpu_image='localhost:5000/modelsat' is untagged",
    )
    _rejected(None, r"--image 'modelsat:latest' is the mutable tag 'latest'", image="modelsat:latest")
    _rejected(
        _k8s(image_pinning="digest"),
        r"kubernetes\.image='ghcr\.io/org/modelsat:0\.1\.0' is pinned by the tag '0\.1\.0' only, not by digest",
    )
    digest = "ghcr.io/org/modelsat@sha256:" + "a" * 64
    files = _render(_k8s(image_pinning="digest", image=digest))
    assert _pod(files, "rayservice.yaml", "cpu")["containers"][0]["image"] == digest
    _rejected(
        _k8s(image="ghcr.io/org/modelsat@sha256:abc"), r"'ghcr\.io/org/modelsat@sha256:abc': malformed digest"
    )
    loose = _render(_k8s(image_pinning="none", image="modelsat:latest"))  # allowed only when asked for
    assert _pod(loose, "rayservice.yaml", "head")["containers"][0]["image"] == "modelsat:latest"


def test_hub_models_must_pin_a_commit_when_required():
    def revision(value):
        def change(raw):
            raw["kubernetes"]["require_model_revision"] = True
            if value is not None:
                raw["models"][0]["engine"]["engine_args"]["revision"] = value

        return change

    _rejected(
        revision(None),
        r"models\[m1\]\.engine\.engine_args\.revision=None: the hub model 'org/m1' is not pinned "
        r"\(kubernetes\.require_model_revision\); allowed: a 40-hex commit id",
    )
    _rejected(revision("main"), r"engine_args\.revision='main'")
    files = _render(revision(COMMIT))
    serve = yaml.safe_load(files["rayservice.yaml"]["spec"]["serveConfigV2"])
    assert COMMIT in yaml.safe_dump(serve["applications"][1])  # passed on to vLLM's AsyncEngineArgs


# 7. /dev/shm -----------------------------------------------------------------------------------------------
def _shm(pod: dict[str, Any]) -> dict[str, Any] | None:
    return next((v["emptyDir"] for v in pod.get("volumes", []) if v["name"] == "dshm"), None)


def test_dev_shm_is_memory_backed_with_a_size_limit():
    files = _render()
    assert _shm(_pod(files, "rayservice.yaml", "gpu")) == {"medium": "Memory", "sizeLimit": "8Gi"}
    assert _shm(_pod(files, "rayjob-train-router.yaml", "train")) == {"medium": "Memory", "sizeLimit": "8Gi"}
    assert _shm(_pod(files, "rayservice.yaml", "cpu")) is None
    sized = _render(_k8s(shm_size="16Gi"))
    assert _shm(_pod(sized, "rayservice.yaml", "gpu"))["sizeLimit"] == "16Gi"
    per_group = _render(lambda r: r["kubernetes"]["worker_groups"][0].update(shm_size="2Gi"))
    assert _shm(_pod(per_group, "rayservice.yaml", "cpu")) == {"medium": "Memory", "sizeLimit": "2Gi"}
    _rejected(
        _k8s(shm_size="64Gi"), r"worker group 'gpu': /dev/shm sizeLimit 64Gi is above the pod's memory 32Gi"
    )


# 8. strict offline check -----------------------------------------------------------------------------------
def test_the_rendered_set_passes_the_strict_schema_checks():
    for name, doc in _render().items():
        if doc["kind"] == "RayService":  # CRD schema + env schemas; serveConfigV2 needs Ray Serve (elsewhere)
            spec = apply_defaults(doc["spec"], load_schema("RayService")["properties"]["spec"])
            assert spec_problems("RayService", spec, strict=True) == []
            assert pod_env_problems(spec) == []
        elif doc["kind"] != "Kustomization":
            validate_manifest(doc, source=name)


BROKEN_POLICIES = {
    "misspelled-field": (
        lambda s: s.update(ingres=s.pop("ingress")),
        r"spec\.ingres: unknown field \(did you mean 'ingress'\?\); allowed: egress, ingress, podSelector, policyTypes",
    ),
    "bad-protocol": (
        lambda s: s["ingress"][1]["ports"][0].update(protocol="HTTP"),
        r"spec\.ingress\[1\]\.ports\[0\]\.protocol=\"HTTP\": allowed: TCP, UDP, SCTP",
    ),
    "port-out-of-range": (
        lambda s: s["ingress"][1]["ports"][0].update(port=80000),
        r"spec\.ingress\[1\]\.ports\[0\]\.port=80000: out of range; allowed: 1-65535 or a port name",
    ),
    "port-wrong-type": (
        lambda s: s["ingress"][1]["ports"][0].update(port=[8000]),
        r"spec\.ingress\[1\]\.ports\[0\]\.port=\[8000\]: expected an integer or a string",
    ),
    "peer-not-a-list": (
        lambda s: s["ingress"][0].update({"from": {"podSelector": {}}}),
        r"spec\.ingress\[0\]\.from=.*: expected array",
    ),
    "bad-policy-type": (
        lambda s: s.update(policyTypes=["Inbound"]),
        r"spec\.policyTypes\[0\]=\"Inbound\": allowed: Ingress, Egress",
    ),
    "bad-cidr": (
        lambda s: s["ingress"][1].update({"from": [{"ipBlock": {"cidr": "10.0.0.300/8"}}]}),
        r"ipBlock\.cidr=\"10\.0\.0\.300/8\": not a CIDR",
    ),
}


@pytest.mark.parametrize("case", BROKEN_POLICIES, ids=str)
def test_a_broken_network_policy_fails_the_kubernetes_schema_check(case):
    change, message = BROKEN_POLICIES[case]
    policy = copy.deepcopy(_render()["networkpolicy.yaml"])
    change(policy["spec"])
    with pytest.raises(ConfigError, match=r"networkpolicy\.yaml: NetworkPolicy zoo-svc-ray: .*" + message):
        validate_manifest(policy, source="networkpolicy.yaml")


def test_the_policy_name_api_version_and_metadata_are_checked():
    policy = _render()["networkpolicy.yaml"]
    bad = copy.deepcopy(policy) | {"apiVersion": "networking.k8s.io/v1beta1"}
    bad["metadata"] = {**bad["metadata"], "name": "Zoo_Policy", "label": {}}
    with pytest.raises(ConfigError) as e:
        validate_manifest(bad)
    text = str(e.value)
    assert (
        "3 problems" in text
        and 'apiVersion="networking.k8s.io/v1beta1": allowed: networking.k8s.io/v1' in text
    )
    assert 'metadata.name="Zoo_Policy": not a DNS-1123 subdomain' in text
    assert "metadata.label: unknown field (did you mean 'labels'?)" in text
    policy = copy.deepcopy(policy)
    policy["spec"]["ingress"][1]["ports"][0]["prot"] = "TCP"
    validate_manifest(
        copy.deepcopy(policy), strict=False
    )  # non-strict: unknown fields are pruned, not errors
    with pytest.raises(ConfigError, match=r"ports\[0\]\.prot: unknown field"):
        validate_manifest(policy)


def test_broken_secret_references_in_pod_specs_fail_the_kubernetes_schema_check():
    job = copy.deepcopy(_render()["rayjob-aptitude-m1.yaml"])
    env = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["env"]
    api = next(i for i, e in enumerate(env) if e["name"] == "MODELSAT_API_KEY")
    env[api]["valueFrom"]["secretKeyRef"].update(name="Zoo_Key", key="api key")
    env[api]["value"] = "plain"
    at = rf"spec\.rayClusterSpec\.workerGroupSpecs\[0\]\.template\.spec\.containers\[0\]\.env\[{api}\]"
    with pytest.raises(ConfigError) as e:
        validate_manifest(job)
    text = str(e.value)
    assert "3 problems" in text, text
    assert re.search(
        at + r"\.valueFrom\.secretKeyRef\.name=\"Zoo_Key\": not a Secret name; allowed: a DNS-1123", text
    )
    assert re.search(at + r"\.valueFrom\.secretKeyRef\.key=\"api key\": not a Secret key", text)
    assert re.search(at + r": both value and valueFrom; allowed: one of them", text)


def test_missing_kubernetes_schemas_are_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSAT_K8S_SCHEMAS", str(tmp_path))
    with pytest.raises(
        ConfigError, match=r"networkpolicy-networking-v1\.json not found; set \$MODELSAT_K8S_SCHEMAS"
    ):
        validate_manifest(_render()["networkpolicy.yaml"])


def test_committed_gpu_zoo_is_the_render_of_the_example_config():
    """k8s/gpu-zoo/ is derived (tests/integration/test_kuberay_render.py checks it too, with the CLI)."""
    files = render_manifests(ServingConfig.from_yaml(EXAMPLE))
    rendered = ROOT / "k8s" / "gpu-zoo"
    assert sorted(files) == sorted(p.name for p in rendered.iterdir())
    for name, doc in files.items():
        assert (rendered / name).read_text() == dump_manifest(doc, EXAMPLE.name), (
            f"k8s/gpu-zoo/{name} is stale"
        )


def test_a_rendering_without_auth_needs_allow_unauthenticated():
    def no_auth(raw):
        raw["ingress"].pop("auth_token_env")
        raw["kubernetes"]["secret_env"] = raw["kubernetes"]["secret_env"][1:]

    with pytest.raises(ConfigError, match="listens beyond loopback but ingress.auth_token_env is not set"):
        _render(no_auth)

    def allowed(raw):
        no_auth(raw)
        raw["ingress"]["allow_unauthenticated"] = True

    assert "rayservice.yaml" in _render(allowed)
