"""How `modelsat registry list | show` print the model registry (Markdown); the registry itself is
`modelsat.registry` (storage only)."""

from __future__ import annotations

from typing import Any

from modelsat.registry import ModelCard, RegistryEntry

__all__ = ["entry_report", "registry_table"]


def _endpoint(card: ModelCard) -> str:
    if card.base_url:
        return card.base_url + (f" ({card.served_model_name})" if card.served_model_name else "")
    return f"serve:{card.serve_application}" if card.serve_application else "-"


def registry_table(entries: list[RegistryEntry]) -> str:
    """Markdown table of registry entries: name, version, engine, items, mean accuracy, price, endpoint."""
    lines = [
        "| model | version | engine | items | unparsed | mean accuracy % | USD / 1M tok | endpoint | added |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        a = e.aptitude
        price = "-" if e.card.usd_per_mtok is None else f"{e.card.usd_per_mtok:g}"
        lines.append(
            f"| {e.name} | {e.version} | {a.get('engine', {}).get('kind', '?')} | {a.get('n_items', '?')} | "
            f"{a.get('n_unparsed', '?')} | {100 * float(e.profile.accuracies.mean()):.1f} | {price} | "
            f"{_endpoint(e.card)} | {e.created_at} |"
        )
    return "\n".join(lines)


def entry_report(entry: RegistryEntry, history: list[dict[str, Any]]) -> str:
    """Markdown account of one entry: card, per-task capability profile, aptitude summary, versions."""
    card = entry.card
    a = entry.aptitude
    tasks = a.get("tasks") or [f"task {i}" for i in range(len(entry.profile.accuracies))]
    out = [
        f"# {entry.name} (version {entry.version}, {entry.created_at})",
        "",
        f"- endpoint: {_endpoint(card)}",
        f"- price: {'unknown' if card.usd_per_mtok is None else f'{card.usd_per_mtok:g} USD per 1M tokens'}",
        f"- context length: {'unknown' if card.context_length_tokens is None else f'{card.context_length_tokens} tokens'}",
        f"- aptitude test {a.get('test', '?')} (zoo {a.get('zoo', '?')}), engine {a.get('engine', {}).get('kind', '?')}: "
        f"{a.get('n_items', '?')} items, {a.get('n_unparsed', '?')} without an extractable answer, "
        f"{a.get('seconds', '?')} s",
        f"- profile source: {entry.profile.source or '-'}",
        "",
        "| task | items | accuracy % |",
        "|---|---|---|",
    ]
    for t, n, acc in zip(tasks, entry.profile.n_items, entry.profile.accuracies, strict=True):
        out.append(f"| {t} | {int(n)} | {100 * float(acc):.1f} |")
    out += [
        "",
        "versions: " + ", ".join(f"{h['version']}{' (removed)' if h['removed'] else ''}" for h in history),
    ]
    return "\n".join(out)
