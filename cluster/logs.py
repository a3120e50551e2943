"""Where Ray's and Ray Serve's log lines go: a file (the default for the command line), or the console (verbose).

By default a Ray cluster streams every worker's, raylet's, Serve controller's, proxy's and replica's stdout and
stderr to the driver (`ray.init(log_to_driver=True)`), and the driver's own `ray` / `ray.serve` loggers write
INFO lines to stderr: about 190 lines in one main job, mixed into the progress bars. `capture_ray_logs` turns
both off for the commands of this process: the driver-side lines (and Python warnings) go to a log file, the
workers' stay in Ray's session log directory (`ray_session_logs_dir()`), and `connect` starts clusters with
`log_to_driver=False`. `verbose=True` (`--verbose`, or `MODELSAT_VERBOSE=1`) keeps Ray's default behaviour.

Docs: https://docs.ray.io/en/latest/ray-observability/user-guides/configure-logging.html
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "announce_session",
    "capture_ray_logs",
    "ray_log_to_driver",
    "ray_session_logs_dir",
    "verbose_requested",
]

#: Loggers whose lines go to the log file instead of the console (driver side).
LIBRARY_LOGGERS = ("ray", "ray.serve", "ray.data", "ray.train", "ray.tune", "py.warnings", "modelsat.serving")

_state: dict[str, Any] = {"log_to_driver": True, "announce": None}


def verbose_requested(flag: bool = False) -> bool:
    """True when `--verbose` was given or `MODELSAT_VERBOSE=1` is set."""
    return flag or os.environ.get("MODELSAT_VERBOSE", "") not in ("", "0")


def ray_log_to_driver() -> bool:
    """The `log_to_driver` that `cluster.connect` passes to `ray.init` (False after `capture_ray_logs`)."""
    return _state["log_to_driver"]


def capture_ray_logs(
    log_file: Path | None, verbose: bool = False, announce: Callable[[str], None] | None = None
) -> Path | None:
    """Send Ray's driver-side log lines and Python warnings to `log_file`; workers' logs stay in Ray's files.

    Imports `ray` and `ray.serve` first when they are installed (each installs its console handler on import),
    then replaces their console handlers with one file handler. Idempotent.

    Args:
        log_file: the file to append to (its directory is created); None = drop the driver-side INFO lines
            and keep WARNING and above on the console.
        verbose: keep Ray's default console output (nothing is redirected).
        announce: called once with a line naming Ray's session log directory when `connect` starts or
            reaches a cluster (e.g. the command line's progress log).
    Returns:
        `log_file`, or None when nothing was redirected to a file.
    """
    if verbose_requested(verbose):
        _state["log_to_driver"] = True
        return None
    _state["log_to_driver"] = False
    _state["announce"] = announce
    for mod in ("ray", "ray.serve"):
        if importlib.util.find_spec(mod.split(".")[0]) is not None:
            try:
                importlib.import_module(mod)
            except ImportError:  # ray without the serve extra
                continue
    logging.captureWarnings(True)
    handler: logging.Handler
    if log_file is not None:
        log_file = Path(log_file)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler()
        handler.setLevel(logging.WARNING)
    handler.set_name("modelsat-capture")
    for name in LIBRARY_LOGGERS:
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            if h.get_name() == "modelsat-capture" or type(h) is not logging.FileHandler:
                lg.removeHandler(h)
        lg.addHandler(handler)
        lg.propagate = False
        if lg.level == logging.NOTSET:
            lg.setLevel(logging.INFO)
    return log_file


def ray_session_logs_dir() -> str | None:
    """Ray's log directory of the current session on this node (workers, raylet, Serve), or None."""
    try:
        import ray

        if not ray.is_initialized():
            return None
        node = ray._private.worker.global_worker.node  # no public API names the session directory
        return node.get_logs_dir_path()
    except Exception:  # noqa: BLE001 - a diagnostic only; an older/newer Ray simply names no directory
        return None


def announce_session() -> None:
    """Name Ray's session log directory once, through the `announce` given to `capture_ray_logs`."""
    say = _state.get("announce")
    where = ray_session_logs_dir()
    if say is not None and where is not None and _state.get("announced") != where:
        _state["announced"] = where
        say(f"Ray's own logs (workers, Serve controller, proxy, replicas): {where}")
