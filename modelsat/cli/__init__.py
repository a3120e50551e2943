"""The `modelsat` command line (Typer). Every command turns a `ModelSATError` into `error: ...` and exit code 2.

This package is the only part of `modelsat` that may reach up into `cluster/`, `jobs/` and `services/`
(lazily, inside a command). One module per command group: `_lifecycle` (train, eval, route, aptitude), `_run` (run),
`_registry` (the model registry), `_serve` (Ray Serve), `_k8s` (KubeRay manifests), `_data` (routing data:
validate, stats, import, fetch).
"""

from __future__ import annotations

import sys

from modelsat.cli import _data, _k8s, _lifecycle, _registry, _run, _serve  # noqa: F401  (each registers its commands on `app`)
from modelsat.cli._app import app, bundled_config

__all__ = ["app", "bundled_config", "main"]


def main() -> None:
    """Console entry point (`modelsat`)."""
    app(prog_name="modelsat")


if __name__ == "__main__":
    sys.exit(main())
