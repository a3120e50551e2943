"""STYLE.md §3: the KubeRay manifests in k8s/ validate against the KubeRay v1.7.0 CRD schemas (cluster.kuberay_validate)."""

import copy
from pathlib import Path

import pytest
import yaml

from cluster.kuberay_validate import (
    apply_defaults,
    load_schema,
    main,
    schema_dir,
    validate_file,
    validate_manifest,
)
from modelsat.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted(p for p in (ROOT / "k8s").rglob("*.yaml") if p.name != "kustomization.yaml")
TRAIN_JOB = ROOT / "k8s" / "gpu-zoo" / "rayjob-train-router.yaml"
TRAIN_JOB_NAME = "train-router-modelsat-gpu-zoo"

pytestmark = pytest.mark.skipif(
    not schema_dir().is_dir(),
    reason=f"KubeRay CRD schemas not found at {schema_dir()} (set $MODELSAT_KUBERAY_SCHEMAS)",
)


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


@pytest.fixture
def job() -> dict:
    """A fresh copy of the router-training RayJob, for the tests to break."""
    return copy.deepcopy(_docs(TRAIN_JOB)[0])


def _workers(doc: dict) -> dict:
    return doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]


def _head(doc: dict) -> dict:
    return doc["spec"]["rayClusterSpec"]["headGroupSpec"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_manifest_validates(path):
    if any(d.get("kind") == "RayService" for d in _docs(path)):
        pytest.importorskip("ray.serve")  # serveConfigV2 is checked with Ray Serve's own schema
    found = validate_file(path)  # the NetworkPolicy against the vendored Kubernetes schema (k8s/schemas/)
    assert found and all(kind in ("RayJob", "RayService", "RayCluster", "NetworkPolicy") for kind, _ in found)


def test_the_rendered_set_has_a_network_policy():
    kinds = [d.get("kind") for path in MANIFESTS for d in _docs(path)]
    assert "NetworkPolicy" in kinds, f"no NetworkPolicy among {[str(p) for p in MANIFESTS]}"


def test_a_rayjob_exists():
    kinds = [d.get("kind") for path in MANIFESTS for d in _docs(path)]
    assert "RayJob" in kinds, f"no RayJob among {[str(p) for p in MANIFESTS]}"


def test_train_job_runs_router_training_on_gpu_workers(job):
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert "modelsat train" in spec["entrypoint"] and "--workers" in spec["entrypoint"]
    worker = _workers(job)["template"]["spec"]["containers"][0]["resources"]
    assert worker["limits"]["nvidia.com/gpu"] >= 1 and worker["requests"]["nvidia.com/gpu"] >= 1
    assert _head(job)["rayStartParams"]["num-cpus"] == "0"
    assert yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]["DS_ACCELERATOR"] == "cuda"


def _set(path: list, value):
    def change(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def _delete(path: list):
    def change(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return change


RC = ["spec", "rayClusterSpec"]
WORKERS = [*RC, "workerGroupSpecs", 0]
BROKEN = {
    "misspelled-field": (
        _set(["spec", "shutdownAfterJobFinish"], True),
        r"spec\.shutdownAfterJobFinish: unknown field \(did you mean 'shutdownAfterJobFinishes'\?\); allowed: ",
    ),
    "misspelled-worker-field": (
        _set([*WORKERS, "minReplica"], 4),
        r"workerGroupSpecs\[0\]\.minReplica: unknown field \(did you mean 'minReplicas'\?\)",
    ),
    "int-ray-start-param": (
        _set([*RC, "headGroupSpec", "rayStartParams", "num-cpus"], 0),
        r'headGroupSpec\.rayStartParams\.num-cpus=0: expected string .*quote it, "0"',
    ),
    "name-too-long": (
        _set(["metadata", "name"], "a" * 48),
        r"metadata\.name=\"a{48}\": .*at most 47 characters",
    ),
    "name-uppercase": (
        _set(["metadata", "name"], "Train-Router"),
        r"metadata\.name=\"Train-Router\": not a DNS-1035",
    ),
    "wrong-kind": (
        _set(["kind"], "RayJobs"),
        r"kind=\"RayJobs\": not supported; allowed: RayCluster, RayJob, RayService, NetworkPolicy",
    ),
    "wrong-api-version": (
        _set(["apiVersion"], "ray.io/v1alpha1"),
        r"apiVersion=\"ray.io/v1alpha1\": allowed: ray.io/v1",
    ),
    "missing-head-template": (
        _delete([*RC, "headGroupSpec", "template"]),
        r"spec\.rayClusterSpec\.headGroupSpec\.template: required field is missing",
    ),
    "wrong-type": (
        _set(["spec", "shutdownAfterJobFinishes"], "yes"),
        r"shutdownAfterJobFinishes=\"yes\": expected boolean",
    ),
    "bad-quantity": (
        _set([*WORKERS, "template", "spec", "containers", 0, "resources", "limits", "memory"], "32GB"),
        r"limits\.memory=\"32GB\": not a Kubernetes quantity",
    ),
    "int32-overflow": (_set([*WORKERS, "replicas"], 2**31), r"replicas=2147483648: out of range"),
    "unknown-submission-mode": (
        _set(["spec", "submissionMode"], "K8sMode"),
        r"submissionMode=\"K8sMode\": allowed: K8sJobMode, HTTPMode, InteractiveMode, SidecarMode",
    ),
    "duplicate-volume-mount": (
        lambda d: _head(d)["template"]["spec"]["containers"][0]["volumeMounts"].append(
            {"name": "x", "mountPath": "/data"}
        ),
        r"volumeMounts\[2\]=.*duplicate entry \(mountPath=\"/data\"\)",
    ),
    "duplicate-worker-group": (
        lambda d: d["spec"]["rayClusterSpec"]["workerGroupSpecs"].append(copy.deepcopy(_workers(d))),
        r"workerGroupSpecs\[1\]\.groupName=\"train\": worker group names must be unique",
    ),
    "no-worker-container": (
        _set([*WORKERS, "template", "spec", "containers"], []),
        r"workerGroupSpecs\[0\]\.template\.spec\.containers: allowed: at least one container",
    ),
    "runtime-env-not-yaml": (
        _set(["spec", "runtimeEnvYAML"], "env_vars: [a"),
        r"spec\.runtimeEnvYAML: not valid YAML",
    ),
    "misspelled-metadata": (
        _set(["metadata", "label"], {}),
        r"metadata\.label: unknown field \(did you mean 'labels'\?\)",
    ),
}


@pytest.mark.parametrize("case", BROKEN, ids=str)
def test_broken_manifest_is_rejected(job, case):
    change, message = BROKEN[case]
    change(job)
    with pytest.raises(ConfigError, match=message):
        validate_manifest(job)


def test_several_problems_are_all_reported(job):
    job["spec"]["entrypointz"] = "x"
    _head(job)["rayStartParams"]["num-gpus"] = 1
    with pytest.raises(
        ConfigError, match=r"2 problems:\n  - spec\.entrypointz: .*\n  - .*num-gpus=1: expected string"
    ):
        validate_manifest(job)


def test_misspelled_field_passes_without_strict(job):
    job["spec"]["shutdownAfterJobFinish"] = True
    validate_manifest(job, strict=False)


def test_server_defaults_fill_required_replica_bounds(job):
    """minReplicas/maxReplicas are `required` in the CRD but defaulted by the API server (0 and 2^31-1)."""
    for key in ("minReplicas", "maxReplicas"):
        del _workers(job)[key]
    validate_manifest(job)
    spec = apply_defaults(job["spec"], load_schema("RayJob")["properties"]["spec"])
    assert (_workers({"spec": spec})["minReplicas"], _workers({"spec": spec})["maxReplicas"]) == (
        0,
        2**31 - 1,
    )
    assert "minReplicas" not in _workers(job), "apply_defaults must not modify its input"


def test_null_fields_are_pruned_then_defaulted(job):
    job["spec"]["submissionMode"] = None
    spec = apply_defaults(job["spec"], load_schema("RayJob")["properties"]["spec"])
    assert spec["submissionMode"] == "K8sJobMode"
    validate_manifest(job)


def test_name_limit_depends_on_kind(job):
    cluster = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "a" * 63},
        "spec": job["spec"]["rayClusterSpec"],
    }
    validate_manifest(cluster)  # a RayCluster name may have 63 characters, a RayJob's only 47
    cluster["metadata"]["name"] = "a" * 64
    with pytest.raises(ConfigError, match="at most 63 characters"):
        validate_manifest(cluster)


def test_serve_config_must_be_a_yaml_mapping(job):
    service = {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "router"},
        "spec": {"rayClusterConfig": job["spec"]["rayClusterSpec"], "serveConfigV2": "applications: [\n"},
    }
    with pytest.raises(ConfigError, match=r"spec\.serveConfigV2: not valid YAML"):
        validate_manifest(service)


def test_validate_file_names_the_bad_document(tmp_path, job):
    bad = copy.deepcopy(job)
    bad["metadata"]["name"] = "Bad"
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump_all([job, bad]))
    with pytest.raises(ConfigError, match=r"two\.yaml#1: RayJob Bad: metadata\.name"):
        validate_file(path)
    path.write_text(yaml.safe_dump_all([job, job | {"metadata": {"name": "other"}}]))
    assert validate_file(path) == [("RayJob", TRAIN_JOB_NAME), ("RayJob", "other")]


def test_missing_schema_dir_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSAT_KUBERAY_SCHEMAS", str(tmp_path))
    with pytest.raises(ConfigError, match=r"rayjob-v1\.json not found; set \$MODELSAT_KUBERAY_SCHEMAS"):
        load_schema("RayJob")
    with pytest.raises(ConfigError, match="allowed: RayCluster, RayJob, RayService"):
        load_schema("Deployment")


def test_cli_prints_ok_or_exits_2(tmp_path, job, capsys):
    assert main([str(TRAIN_JOB)]) == 0
    assert f"ok {TRAIN_JOB} (RayJob {TRAIN_JOB_NAME})" in capsys.readouterr().out
    job["spec"]["backoffLimt"] = 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(job))
    assert main([str(TRAIN_JOB), str(bad)]) == 2
    out = capsys.readouterr()
    assert "ok " in out.out and "spec.backoffLimt: unknown field (did you mean 'backoffLimit'?)" in out.err


def test_the_serve_deploy_config_passes_ray_serve_schema():
    """What `modelsat serve` deploys and KubeRay's serveConfigV2 carries is a valid Ray Serve deploy config."""
    serve_schema = pytest.importorskip("ray.serve.schema")
    from cluster.serve_config import serve_deploy_config
    from modelsat.serving_config import ServingConfig

    zoo = ServingConfig.from_dict(
        {
            "router": {"checkpoint": "/ckpt", "registry": "/reg"},
            "models": [
                {"name": "org/m-1", "engine": {"kind": "recorded", "routing_data": "/z"}},
                {"name": "m2", "engine": {"kind": "vllm", "model_path": "/m2"}, "resources": {"num_gpus": 1}},
            ],
        }
    )
    serve_schema.ServeDeploySchema.model_validate(serve_deploy_config(zoo))
