"""Issue 6: the serving graph on a 3-node local Ray cluster (cluster.local_multinode_cluster), the router and
each model application pinned to a different node with custom node resources, as KubeRay worker groups do with
`ray_resources`; and the Kubernetes hot-add flow: a served model without a profile is pending (called by name,
never chosen) until its aptitude test is registered, then the router picks it up without a redeploy."""

from __future__ import annotations

import time

import openai
import pytest
from ray import serve
from ray.util.state import list_actors

from cluster import local_multinode_cluster
from cluster.local import free_port
from modelsat.aptitude import measure_profiles
from modelsat.data import load_routing_data
from modelsat.evaluate import held_out_rows
from modelsat.pipeline import train_pipeline
from modelsat.registry import ModelCard, ModelRegistry, aptitude_fingerprint
from modelsat.runconfig import RunConfig
from modelsat.serving_config import ServingConfig, model_app_name
from services.deploy import deploy_serving_config
from tests.conftest import mmlu_pro_slice

pytestmark = [
    pytest.mark.integration,
]

MODEL_A, MODEL_B, PENDING = "gemini-1.5-pro-002", "DeepSeek-Coder-V2", "gemini-1.5-flash-002"
NODES = [  # head + 2 workers; each advertises one custom resource, like a KubeRay worker group's ray_resources
    {"num_cpus": 4, "resources": {"pool-a": 100}},
    {"num_cpus": 4, "resources": {"pool-router": 100}},
    {"num_cpus": 4, "resources": {"pool-b": 100}},
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert):
    """A tiny-BERT router on a 1-in-20 slice of mmlu_pro; a registry with profiles of MODEL_A and MODEL_B only."""
    root = tmp_path_factory.mktemp("multinode")
    zoo_dir = mmlu_pro_slice(root / "mmlu_pro_slice", every=20)
    cfg = RunConfig.from_dict(
        {
            "data": {"routing_data": str(zoo_dir), "unseen_models": [PENDING]},
            "aptitude": {"n_tasks": 4, "items_per_task": 5},
            "router": {"backbone": str(tiny_bert), "capability_encoder": str(tiny_bert)},
            "train": {"max_steps": 10, "eval_every": 10, "groups_per_step": 8},
        }
    )
    ckpt, _ = train_pipeline(cfg, root / "ckpt")
    zoo = load_routing_data(zoo_dir)
    profiles = measure_profiles(ckpt.aptitude, zoo)
    registry = ModelRegistry(root / "registry")
    fp = aptitude_fingerprint(ckpt.aptitude)
    for name in (MODEL_A, MODEL_B):
        registry.put(
            ModelCard(name=name, serve_application=model_app_name(name)), profiles[name], {"test": fp}
        )
    return {
        "zoo_dir": zoo_dir,
        "ckpt": ckpt,
        "registry": registry,
        "zoo": zoo,
        "profiles": profiles,
        "fp": fp,
    }


def _model(name: str, zoo_dir, pool: str) -> dict:
    return {
        "name": name,
        "engine": {"kind": "recorded", "routing_data": str(zoo_dir)},
        "resources": {"num_cpus": 0.5, "resources": {pool: 1}},
    }


def _replica_nodes() -> dict[str, set[str]]:
    """Serve replica actors by application, with the custom resources of the node each runs on."""
    import ray

    node_pools = {n["NodeID"]: {r for r in n["Resources"] if r.startswith("pool-")} for n in ray.nodes()}
    out: dict[str, set[str]] = {}
    for actor in list_actors(filters=[("state", "=", "ALIVE")], detail=True, limit=1000):
        if actor.class_name.startswith("ServeReplica:"):
            app = actor.class_name.split(":")[1]
            out.setdefault(app, set()).update(node_pools.get(actor.node_id, set()))
    return out


def test_serving_graph_on_three_nodes_and_a_pending_model_joins(trained):
    port = free_port()
    zoo = ServingConfig.model_validate(
        {
            "http_port": port,
            "proxy_location": "HeadOnly",  # three Ray nodes share this host: one proxy, one port
            "ingress": {"resources": {"num_cpus": 0.5, "resources": {"pool-router": 1}}},
            "router": {
                "checkpoint": str(trained["ckpt"].path),
                "registry": str(trained["registry"].uri),
                "resources": {"num_cpus": 1, "resources": {"pool-router": 1}},
                "registry_refresh_s": 1.0,
            },
            "models": [
                _model(MODEL_A, trained["zoo_dir"], "pool-a"),
                _model(MODEL_B, trained["zoo_dir"], "pool-b"),
                _model(PENDING, trained["zoo_dir"], "pool-b"),
            ],
        }
    )
    with local_multinode_cluster(NODES) as info:
        assert info.nodes == 3
        try:
            deploy_serving_config(zoo, info.address)
            placed = _replica_nodes()
            assert placed[zoo.name] == {"pool-router"}  # ingress + router
            assert placed[model_app_name(MODEL_A)] == {"pool-a"}
            assert placed[model_app_name(MODEL_B)] == {"pool-b"} == placed[model_app_name(PENDING)]

            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
            data = trained["zoo"]
            rows = held_out_rows(trained["ckpt"], data, "test")[:12]
            chosen = []
            for i in rows:
                r = client.chat.completions.with_raw_response.create(
                    model="auto",
                    messages=[{"role": "user", "content": str(data.prompts[i])}],
                    extra_body={"router": {"return_scores": True}},
                )
                body = r.parse()
                assert r.headers["x-modelsat-model"] == body.model
                chosen.append(body.model)
                assert body.model in (MODEL_A, MODEL_B)  # the pending model is never chosen
                scores = body.model_extra["router"]["scores"]
                assert set(scores) == {MODEL_A, MODEL_B}
            # named requests reach the pending model directly
            named = client.chat.completions.create(
                model=PENDING, messages=[{"role": "user", "content": str(data.prompts[rows[0]])}]
            )
            assert named.model == PENDING and named.choices[0].message.content
            with pytest.raises(openai.APIStatusError) as e:
                client.chat.completions.create(
                    model="auto",
                    messages=[{"role": "user", "content": str(data.prompts[rows[0]])}],
                    extra_body={"router": {"candidates": [PENDING]}},
                )
            assert e.value.status_code == 503 and "no_profiled_candidate" in str(e.value.body)

            # the aptitude test of the pending model is registered (what its RayJob does on Kubernetes) ...
            trained["registry"].put(
                ModelCard(name=PENDING, serve_application=model_app_name(PENDING)),
                trained["profiles"][PENDING],
                {"test": trained["fp"]},
            )
            # ... and the router picks it up on its next registry re-read, with no redeploy
            deadline, scores = time.monotonic() + 60, {}
            while PENDING not in scores and time.monotonic() < deadline:
                time.sleep(1.0)
                body = client.chat.completions.create(
                    model="auto",
                    messages=[{"role": "user", "content": str(data.prompts[rows[1]])}],
                    extra_body={"router": {"return_scores": True}},
                )
                scores = body.model_extra["router"]["scores"]
            assert set(scores) == {MODEL_A, MODEL_B, PENDING}
            only = client.chat.completions.create(
                model="auto",
                messages=[{"role": "user", "content": str(data.prompts[rows[0]])}],
                extra_body={"router": {"candidates": [PENDING]}},
            )
            assert only.model == PENDING
        finally:
            serve.shutdown()
