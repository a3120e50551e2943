"""STYLE.md §1: imports point down (modelsat <- cluster <- jobs, services); only modelsat/cli/ reaches up."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module.split(".")[0], node.module}
    return out


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _in_cli(path: Path) -> bool:
    return path.relative_to(ROOT).parts[:2] == ("modelsat", "cli")


@pytest.mark.parametrize("path", _files("modelsat"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_never_imports_ray_or_upper_layers(path):
    imported = _imports(path)
    assert "ray" not in imported, f"{path}: modelsat/ must not import ray"
    if not _in_cli(path):
        assert not imported & {"cluster", "jobs", "services"}, f"{path}: only modelsat/cli/ may reach up"


@pytest.mark.parametrize("path", _files("cluster"), ids=lambda p: str(p.relative_to(ROOT)))
def test_cluster_imports_neither_training_nor_services(path):
    assert not _imports(path) & {"jobs", "services"}


@pytest.mark.parametrize("path", _files("jobs"), ids=lambda p: str(p.relative_to(ROOT)))
def test_jobs_never_import_services(path):
    assert "services" not in _imports(path)


@pytest.mark.parametrize("path", _files("services"), ids=lambda p: str(p.relative_to(ROOT)))
def test_services_never_import_jobs(path):
    assert "jobs" not in _imports(path)


def test_nothing_imports_cli():
    for pkg in ("modelsat", "cluster", "jobs", "services", "benchmarks"):
        for path in _files(pkg):
            if not _in_cli(path):
                assert not any(m.startswith("modelsat.cli") for m in _imports(path)), path
