"""cluster.session: address resolution and fail-fast reachability checks (no Ray cluster is started)."""

import pytest

import cluster
from cluster.session import _check_reachable, resolve_address
from modelsat.errors import ClusterError


def test_public_names_are_the_functions_not_submodules():
    assert callable(cluster.connect) and callable(cluster.original_error)  # no Ray import needed
    with pytest.raises(AttributeError, match="allowed: PACKAGES"):
        cluster.no_such_name  # noqa: B018


def test_explicit_address_wins_over_ray_address(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert resolve_address("ray://head:10001") == "ray://head:10001"
    assert resolve_address(None) == "10.0.0.1:6379"
    monkeypatch.delenv("RAY_ADDRESS")
    assert resolve_address(None) is None  # embedded local cluster


def test_unreachable_and_malformed_addresses_fail_fast():
    with pytest.raises(ClusterError, match="cannot reach a Ray cluster at '127.0.0.1:9'"):
        _check_reachable("127.0.0.1:9", timeout_s=2)
    with pytest.raises(ClusterError, match="cannot parse Ray address 'head-without-port'"):
        _check_reachable("head-without-port")
