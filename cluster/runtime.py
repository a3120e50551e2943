"""Runtime-environment conventions shared by the Ray jobs and the Serve applications."""

from __future__ import annotations

__all__ = ["VLLM_CPU_ENV"]

#: Environment of a vLLM engine inside a Ray worker or Serve replica on CPU (ENVIRONMENT.md, "vLLM on CPU"):
#: spawn its worker process, leave OpenMP threads unpinned (Ray owns placement), 1 GiB of KV cache.
VLLM_CPU_ENV = {
    "VLLM_WORKER_MULTIPROC_METHOD": "spawn",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "VLLM_CPU_KVCACHE_SPACE": "1",
}
