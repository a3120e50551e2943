"""The router deployment's candidate set: which served models have a capability profile it can use.

Kept free of Ray so the unit tier tests it (STYLE.md §7); `services.router.RouterDeployment` swaps the result in
under its state lock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["CandidateSet", "read_candidates"]


@dataclass(frozen=True)
class CandidateSet:
    """The routable part of the served models, read in one registry pass.

    Attributes:
        profiles: routable model name → its `CapabilityProfile`, in the served order.
        prices: routable model name → USD per million tokens (0.0 when its card gives none).
        pending: served models with no usable profile (served by name only, not routed to).
        newly: models that were pending before this read and are routable now.
        source: where the profiles came from, for log lines ("registry URI" or "the checkpoint").
    """

    profiles: dict[str, Any]
    prices: dict[str, float]
    pending: list[str]
    newly: list[str]
    source: str


def read_candidates(
    registry: Any | None,
    aptitude: Any,
    checkpoint_profiles: Mapping[str, Any],
    served: Sequence[str],
    pending: Sequence[str] = (),
) -> CandidateSet:
    """Read the served models' profiles and prices from the registry (or the checkpoint).

    Registry entries that are unusable or measured on another aptitude test are skipped (the registry logs
    each once, `ModelRegistry.entries_for`); every other served model stays routable.

    Args:
        registry: a `modelsat.registry.ModelRegistry`, or None to use `checkpoint_profiles` (prices 0.0).
        aptitude: the router checkpoint's `AptitudeTest`; only profiles measured on it are usable.
        checkpoint_profiles: name → profile shipped in the checkpoint (used without a registry).
        served: the served model names, in order.
        pending: the models pending before this read (to report which became routable).

    Raises:
        RegistryError: the registry cannot be listed, is empty, or none of its profiles fits `aptitude`.
    """
    if registry is not None:
        entries = registry.entries_for(aptitude)
        profiles = {e.name: e.profile for e in entries}
        cards = {e.name: e.card for e in entries}
        source = f"registry {registry.uri}"
    else:
        profiles, cards, source = dict(checkpoint_profiles), {}, "the checkpoint"
    routable = [n for n in served if n in profiles]
    return CandidateSet(
        profiles={n: profiles[n] for n in routable},
        prices={n: float(cards[n].usd_per_mtok or 0.0) if n in cards else 0.0 for n in routable},
        pending=[n for n in served if n not in profiles],
        newly=[n for n in pending if n in profiles],
        source=source,
    )
