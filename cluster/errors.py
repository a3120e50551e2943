"""What went wrong in a Ray task, actor or worker group, without importing Ray (the ingress and unit tests use it).

Ray wraps an exception raised remotely in `RayTaskError` / `UserCodeException` layers whose text carries
tracebacks; callers want the original exception (to classify it) and its one-line message (to show it).
"""

from __future__ import annotations

import re

__all__ = ["original_error", "root_cause"]


def original_error(e: BaseException) -> BaseException:
    """The exception a Ray task or actor raised, unwrapped from `RayTaskError` / `UserCodeException` layers.

    Follows `RayTaskError.cause` and `__cause__` until an exception that is not one of Ray's wrappers.
    Returns `e` itself when nothing is wrapped.
    """
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if not type(cur).__module__.startswith("ray.") and "RayTaskError" not in type(cur).__name__:
            return cur
        cur = getattr(cur, "cause", None) or cur.__cause__
    return e


def root_cause(e: BaseException) -> str:
    """The most specific line of a Ray task, actor or worker-group error: its last `SomethingError: ...` line.

    Ray wraps a remote exception in `RayTaskError` / `UserCodeException` text with tracebacks; the user wants
    the original error's message.
    """
    orig = original_error(e)
    if orig is not e:
        return f"{type(orig).__name__}: {orig}"
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    causes = [
        ln
        for ln in lines
        if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", ln) and not ln.startswith("ray.exceptions.")
    ]
    return causes[-1] if causes else (lines[0] if lines else type(e).__name__)
