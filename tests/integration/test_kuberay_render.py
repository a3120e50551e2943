"""Issue 6: KubeRay manifests rendered from the serving config (cluster.kuberay_render), validated offline, hot-add diffs.

Over ~400 lines: the renderer's cases (RayService, RayJobs, placement, updates) against one set of
schemas; each test is short and they share the serving-config builders at the top."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cluster.kuberay_render import dump_manifest, model_label, render_manifests
from cluster.kuberay_validate import schema_dir, validate_manifest
from cluster.kustomize import validate_dir
from cluster.placement import place_deployments
from cluster.rollout import cluster_update
from modelsat.cli import app
from modelsat.cli._k8s import check_entrypoint
from modelsat.errors import ConfigError
from modelsat.serving_config import ServingConfig

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "modelsat" / "configs" / "serving_gpu_example.yaml"
RENDERED = ROOT / "k8s" / "gpu-zoo"
runner = CliRunner()

# rendering validates serveConfigV2 with Ray Serve's own schema and imports the applications: needs Ray Serve
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not schema_dir().is_dir(), reason=f"KubeRay CRD schemas not found at {schema_dir()}"),
]


def _raw() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def _zoo(raw: dict) -> ServingConfig:
    return ServingConfig.from_dict(raw, source="test")


def _serve(doc: dict) -> dict:
    return yaml.safe_load(doc["spec"]["serveConfigV2"])


def _groups(doc: dict) -> list[dict]:
    return doc["spec"]["rayClusterConfig"]["workerGroupSpecs"]


def _gpu_model(name: str, gpus: int = 1) -> dict:
    return {
        "name": name,
        "engine": {
            "kind": "vllm",
            "model_path": f"org/{name}",
            "engine_args": {"tensor_parallel_size": gpus},
        },
        "resources": {"num_cpus": 4, "num_gpus": gpus},
        "autoscaling": {"min_replicas": 1, "max_replicas": 1},
    }


def _write(tmp_path: Path, raw: dict, name: str = "zoo.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())} if directory.exists() else {}


def test_committed_examples_are_the_render_of_the_example_config():
    """k8s/gpu-zoo/ is derived, never edited by hand: re-rendering reproduces it byte for byte."""
    files = render_manifests(ServingConfig.from_yaml(EXAMPLE))
    assert sorted(files) == sorted(p.name for p in RENDERED.iterdir())
    for name, doc in files.items():
        assert (RENDERED / name).read_text() == dump_manifest(doc, EXAMPLE.name), (
            f"k8s/gpu-zoo/{name} is stale: run `modelsat k8s render --config {EXAMPLE.relative_to(ROOT)} "
            "--out k8s/gpu-zoo`"
        )


def test_rendered_directory_validates_strictly_with_entrypoints():
    found = validate_dir(RENDERED, check_entrypoint=check_entrypoint)
    kinds = sorted(kind for _, kind, _ in found)
    assert kinds == ["NetworkPolicy", "RayJob", "RayJob", "RayJob", "RayService"]


def test_rayservice_layout():
    files = render_manifests(ServingConfig.from_yaml(EXAMPLE))
    svc = files["rayservice.yaml"]
    cluster = svc["spec"]["rayClusterConfig"]
    assert svc["metadata"]["name"] == "modelsat-gpu-zoo"
    assert cluster["enableInTreeAutoscaling"] is True
    assert svc["spec"]["upgradeStrategy"] == {"type": "NewCluster"}
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())
    cpu, gpu = cluster["workerGroupSpecs"]
    assert (cpu["groupName"], cpu["minReplicas"], cpu["maxReplicas"]) == ("cpu", 1, 4)
    assert (gpu["groupName"], gpu["minReplicas"], gpu["maxReplicas"]) == ("gpu-l4", 2, 6)
    pod = gpu["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["containers"][0]["image"].endswith("-gpu")
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert "nvidia.com/gpu" not in cpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    serve = _serve(svc)
    apps = serve["applications"]
    assert serve["http_options"] == {"host": "0.0.0.0", "port": 8000}
    assert [a["route_prefix"] for a in apps] == ["/", None, None]  # only the ingress is reachable over HTTP
    assert all("autoscaling_config" in d for a in apps for d in a["deployments"])
    assert apps[0]["args"]["router"]["checkpoint"] == "/models/router"


def test_rayjobs_shut_down_and_run_the_recipes():
    files = render_manifests(ServingConfig.from_yaml(EXAMPLE), router_uri="s3://bucket/routers/gpu-zoo")
    train = files["rayjob-train-router.yaml"]["spec"]
    assert train["shutdownAfterJobFinishes"] is True and train["ttlSecondsAfterFinished"] == 600
    assert train["entrypoint"].startswith(
        "modelsat train --data /data/mmlu_pro --out s3://bucket/routers/gpu-zoo"
    )
    assert "--workers 2 --use-gpu" in train["entrypoint"]
    workers = train["rayClusterSpec"]["workerGroupSpecs"][0]
    assert workers["replicas"] == workers["minReplicas"] == workers["maxReplicas"] == 2
    assert workers["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    apt = files["rayjob-aptitude-qwen2-5-7b-instruct.yaml"]
    assert apt["spec"]["shutdownAfterJobFinishes"] is True
    entry = apt["spec"]["entrypoint"]
    assert (
        "--router-checkpoint s3://bucket/routers/gpu-zoo --registry /models/registry --engine openai" in entry
    )
    assert (
        "--base-url http://modelsat-gpu-zoo-serve-svc:8000/v1 --served-model-name Qwen2.5-7B-Instruct"
        in entry
    )
    assert check_entrypoint(entry) is None and check_entrypoint(train["entrypoint"]) is None
    assert _serve(files["rayservice.yaml"])["applications"][0]["args"]["router"]["checkpoint"] == (
        "s3://bucket/routers/gpu-zoo"
    )
    assert files["kustomization.yaml"]["resources"] == [n for n in files if n != "kustomization.yaml"]


def _diff(a, b, path=()) -> list[tuple]:
    """Paths where two parsed manifests differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in _diff(a.get(k), b.get(k), (*path, k))]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _diff(x, y, (*path, i))]
    return [] if a == b else [path]


def test_hot_add_on_an_existing_group_changes_only_serve_config(tmp_path):
    before_dir, after_dir = tmp_path / "before", tmp_path / "after"
    raw = _raw()
    assert (
        runner.invoke(
            app, ["k8s", "render", "--config", str(_write(tmp_path, raw)), "--out", str(before_dir)]
        ).exit_code
        == 0
    )
    raw["models"].append(_gpu_model("Mistral-7B-Instruct-v0.3"))
    result = runner.invoke(
        app, ["k8s", "render", "--config", str(_write(tmp_path, raw)), "--out", str(before_dir)]
    )
    assert result.exit_code == 0, result.output
    assert "update over the previous render: serve:" in result.output
    after = _snapshot(before_dir)
    render_manifests(_zoo(_raw()))  # sanity: the original renders too
    before = render_manifests(_zoo(_raw()))
    old_svc = before["rayservice.yaml"]
    new_svc = yaml.safe_load(after["rayservice.yaml"])
    assert _diff(old_svc, new_svc) == [("spec", "serveConfigV2")]
    added = [a["name"] for a in _serve(new_svc)["applications"]][-1]
    assert added == "zoo-Mistral-7B-Instruct-v0.3"
    assert cluster_update(old_svc, new_svc) == "serve"
    # the other files: the existing RayJobs are untouched, one aptitude RayJob is new
    for name in before:
        if name not in ("rayservice.yaml", "kustomization.yaml"):
            assert yaml.safe_load(after[name]) == before[name], name
    assert set(after) - set(before) == {"rayjob-aptitude-mistral-7b-instruct-v0-3.yaml"}
    assert not after_dir.exists()


def test_hot_add_needing_a_new_kind_of_group_appends_it_at_the_end(tmp_path):
    out = tmp_path / "k8s"
    raw = _raw()
    assert (
        runner.invoke(
            app, ["k8s", "render", "--config", str(_write(tmp_path, raw)), "--out", str(out)]
        ).exit_code
        == 0
    )
    old_svc = yaml.safe_load((out / "rayservice.yaml").read_text())
    raw["models"].append(_gpu_model("Qwen2.5-32B-Instruct", gpus=2))
    # the new group is declared first in the config: the render still appends it after the running ones
    raw["kubernetes"]["worker_groups"].insert(
        0, {"name": "gpu-l4-x2", "gpus": 2, "cpu": "16", "memory": "64Gi", "max_replicas": 2}
    )
    result = runner.invoke(app, ["k8s", "render", "--config", str(_write(tmp_path, raw)), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "update over the previous render: append:" in result.output
    new_svc = yaml.safe_load((out / "rayservice.yaml").read_text())
    assert [g["groupName"] for g in _groups(new_svc)] == ["cpu", "gpu-l4", "gpu-l4-x2"]
    assert {p[:4] for p in _diff(old_svc, new_svc)} == {
        ("spec", "serveConfigV2"),
        ("spec", "rayClusterConfig", "workerGroupSpecs"),  # the list grew by one at the end
    }
    assert _groups(new_svc)[:2] == _groups(old_svc)
    assert (
        _groups(new_svc)[2]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2
    )
    assert cluster_update(old_svc, new_svc) == "append"
    placed = {p.deployment: p.group for p in place_deployments(_zoo(raw))}
    assert placed["Qwen2.5-32B-Instruct"] == "gpu-l4-x2" and placed["router"] == "cpu"


def test_other_cluster_changes_mean_a_new_cluster():
    raw = _raw()
    old = render_manifests(_zoo(raw))["rayservice.yaml"]
    raw["kubernetes"]["worker_groups"][1]["memory"] = "48Gi"
    assert cluster_update(old, render_manifests(_zoo(raw))["rayservice.yaml"]) == "new-cluster"
    raw = _raw()
    raw["kubernetes"]["worker_groups"][1]["max_replicas"] = 8  # autoscaling bounds: KubeRay ignores them
    assert cluster_update(old, render_manifests(_zoo(raw))["rayservice.yaml"]) == "serve"
    assert cluster_update(old, copy.deepcopy(old)) == "unchanged"


def _bad(raw_change) -> dict:
    raw = _raw()
    raw_change(raw)
    return raw


BAD_CONFIGS = {
    "gpu-model-without-gpu-group": (
        lambda r: r["kubernetes"].update(worker_groups=[{"name": "cpu", "max_replicas": 8}], training=None),
        r"'Qwen2\.5-7B-Instruct' \(num_cpus=4, num_gpus=1.*fits no worker group \(cpu: no GPUs\).*gpus: N",
    ),
    "model-name-not-a-dns-label": (
        lambda r: r["models"][0].update(name="meta-llama/Llama-3.1-8B"),
        r"model 'meta-llama/Llama-3\.1-8B' renders as 'meta-llama/llama-3-1-8b', not a valid DNS label",
    ),
    "model-name-starting-with-a-digit": (
        lambda r: r["models"][0].update(name="7B-chat"),
        r"model '7B-chat' renders as '7b-chat', not a valid DNS label",
    ),
    "model-labels-collide": (
        lambda r: r["models"][1].update(name="qwen2_5-7b-instruct"),
        r"models 'Qwen2\.5-7B-Instruct' and 'qwen2_5-7b-instruct' both render as 'qwen2-5-7b-instruct'",
    ),
    "group-min-above-max": (
        lambda r: r["kubernetes"]["worker_groups"][1].update(min_replicas=7),
        r"worker group 'gpu-l4': min_replicas=7 is above max_replicas=6",
    ),
    "serve-min-above-max": (
        lambda r: r["models"][0]["autoscaling"].update(min_replicas=3),
        r"min_replicas=3 is above max_replicas=2",
    ),
    "group-too-small": (
        lambda r: r["kubernetes"]["worker_groups"][1].update(max_replicas=4),
        r"worker group 'gpu-l4': max_replicas=4 pods cannot hold .* 4 pods\) plus headroom_pods=1",
    ),
    "path-not-on-a-volume": (
        lambda r: r["router"].update(registry="/srv/registry"),
        r"router\.registry='/srv/registry' is neither a URI nor on a volume the pods mount",
    ),
    "no-registry": (lambda r: r["router"].pop("registry"), r"router\.registry is not set"),
    "bad-cpu-quantity": (
        lambda r: r["kubernetes"]["worker_groups"][0].update(cpu="4 cores"),
        r"kubernetes\.worker_groups\.0\.cpu='4 cores'",
    ),
    "service-name-too-long": (
        lambda r: r["kubernetes"].update(service_name="s" * 48),
        r"kubernetes\.service_name=.*at most 47 characters",
    ),
    "auth-token-without-secret": (
        lambda r: r["kubernetes"].update(secret_env=[]),
        r"ingress\.auth_token_env='MODELSAT_API_KEY': no pod gets this variable",
    ),
}


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=str)
def test_bad_zoo_config_is_a_clear_error_and_nothing_is_written(tmp_path, case):
    change, message = BAD_CONFIGS[case]
    out = tmp_path / "out"
    assert (
        runner.invoke(
            app, ["k8s", "render", "--config", str(_write(tmp_path, _raw())), "--out", str(out)]
        ).exit_code
        == 0
    )
    before = _snapshot(out)
    result = runner.invoke(
        app, ["k8s", "render", "--config", str(_write(tmp_path, _bad(change))), "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert __import__("re").search(message, " ".join(result.output.split())), result.output
    assert _snapshot(out) == before
    fresh = tmp_path / "fresh"
    assert (
        runner.invoke(
            app, ["k8s", "render", "--config", str(_write(tmp_path, _bad(change))), "--out", str(fresh)]
        ).exit_code
        == 2
    )
    assert not fresh.exists()


def test_every_problem_is_reported_at_once():
    raw = _bad(lambda r: r["router"].update(registry="/srv/registry"))
    raw["models"][0]["name"] = "7B-chat"
    with pytest.raises(ConfigError, match=r"\(2 problem\(s\)\)"):
        render_manifests(_zoo(raw))


def test_model_labels():
    assert model_label("Qwen2.5-7B-Instruct") == "qwen2-5-7b-instruct"
    assert model_label("Meta-Llama-3_1-8B") == "meta-llama-3-1-8b"


def _rendered(tmp_path: Path) -> Path:
    out = tmp_path / "k8s"
    assert runner.invoke(app, ["k8s", "render", "--config", str(EXAMPLE), "--out", str(out)]).exit_code == 0
    return out


def _edit(path: Path, change) -> None:
    header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False))


def _serve_edit(change):
    def edit(doc):
        serve = yaml.safe_load(doc["spec"]["serveConfigV2"])
        change(serve)
        doc["spec"]["serveConfigV2"] = yaml.safe_dump(serve)

    return edit


BROKEN_DIRS = {
    "misspelled-field": (
        "rayservice.yaml",
        lambda d: d["spec"].update(upgradeStrategyy={"type": "NewCluster"}),
        r"spec\.upgradeStrategyy: unknown field \(did you mean 'upgradeStrategy'\?\)",
    ),
    "wrong-type": (
        "rayservice.yaml",
        lambda d: d["spec"]["rayClusterConfig"].update(enableInTreeAutoscaling="true"),
        r"enableInTreeAutoscaling=\"true\": expected boolean",
    ),
    "bad-resource-quantity": (
        "rayservice.yaml",
        lambda d: d["spec"]["rayClusterConfig"]["workerGroupSpecs"][1]["template"]["spec"]["containers"][0][
            "resources"
        ]["limits"].update(memory="32 GiB"),
        r"limits\.memory=\"32 GiB\": not a Kubernetes quantity",
    ),
    "import-path-not-in-the-project": (
        "rayservice.yaml",
        _serve_edit(lambda s: s["applications"][1].update(import_path="services.apps:build_model_app")),
        r"applications\[1\]\.import_path=\"services\.apps:build_model_app\": module 'services\.apps' not found",
    ),
    "import-attribute-missing": (
        "rayservice.yaml",
        _serve_edit(lambda s: s["applications"][0].update(import_path="services.app:build_router")),
        r"'services\.app' has no attribute 'build_router'; it has: build_model_app, build_router_app",
    ),
    "serve-config-misspelled": (
        "rayservice.yaml",
        _serve_edit(lambda s: s["applications"][1]["deployments"][0].update(num_replica=2)),
        r"deployments\[0\]\.num_replica: unknown field \(did you mean 'num_replicas'\?\)",
    ),
    "serve-config-wrong-type": (
        "rayservice.yaml",
        _serve_edit(lambda s: s["applications"][1]["deployments"][0].update(max_ongoing_requests="many")),
        r"max_ongoing_requests: Input should be a valid integer",
    ),
    "int-ray-start-param": (
        "rayservice.yaml",
        lambda d: d["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}),
        r"num-cpus=0: expected string",
    ),
    "name-not-dns": (
        "rayjob-train-router.yaml",
        lambda d: d["metadata"].update(name="Train_Router"),
        r"metadata\.name=\"Train_Router\": not a DNS-1035 label",
    ),
    "entrypoint-unknown-option": (
        "rayjob-train-router.yaml",
        lambda d: d["spec"].update(entrypoint=d["spec"]["entrypoint"].replace("--workers", "--worker")),
        r"spec\.entrypoint: `modelsat train --data \.\.\.`: No such option: --worker",
    ),
}


@pytest.mark.parametrize("case", BROKEN_DIRS, ids=str)
def test_validate_rejects_broken_manifests(tmp_path, case):
    name, change, message = BROKEN_DIRS[case]
    out = _rendered(tmp_path)
    _edit(out / name, change)
    result = runner.invoke(app, ["k8s", "validate", str(out)])
    assert result.exit_code == 2, result.output
    assert __import__("re").search(message, result.output), result.output


def test_validate_checks_the_kustomization(tmp_path):
    out = _rendered(tmp_path)
    (out / "rayjob-aptitude-qwen2-5-7b-instruct.yaml").rename(out / "extra.yaml")
    with pytest.raises(ConfigError) as e:
        validate_dir(out)
    text = str(e.value)
    assert "resources entry 'rayjob-aptitude-qwen2-5-7b-instruct.yaml' does not exist" in text
    assert "extra.yaml is not listed in resources" in text and "2 problem(s)" in text


def test_rendered_manifests_validate_without_the_cli():
    for doc in render_manifests(ServingConfig.from_yaml(EXAMPLE)).values():
        if doc["kind"] != "Kustomization":
            validate_manifest(doc)
