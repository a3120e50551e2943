"""Helpers shared by the benchmark scripts (table headers)."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["ROOT", "git_commit"]

ROOT = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    """Short hash of the checked-out commit (for the table header), or `unknown` outside a git checkout."""
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
