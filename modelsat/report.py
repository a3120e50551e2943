"""Evaluation reports: `report.json`, `report.md` and PNG plots (matplotlib), written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelsat.methods import METHOD_ORDER, method_label
from modelsat.paths import atomic_output_dir

__all__ = ["comparison_table", "write_report"]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def comparison_table(report: dict[str, Any]) -> str:
    """The main comparison as a Markdown table (accuracy with and without unseen models, gap closed, cost)."""
    methods = report["methods"]
    seen = report.get("seen_only", {}).get("methods", {})
    has_cost = any("mean_cost_usd" in m for m in methods.values())
    head = "| method | accuracy % | vs best single, points ± paired SE | gap closed % |"
    rule = "|---|---|---|---|"
    if seen:
        head += " accuracy %, seen models only |"
        rule += "---|"
    if has_cost:
        head += " mean cost $/query |"
        rule += "---|"
    head += " most chosen |"
    rule += "---|"
    lines = [head, rule]
    for name in [n for n in METHOD_ORDER if n in methods] + [n for n in methods if n not in METHOD_ORDER]:
        m = methods[name]
        label = method_label(name)
        if name == "best_single":
            label += f" ({m['model']})"
        vs = m.get("vs_best_single")
        diff = (
            "–" if vs is None or name == "best_single" else f"{100 * vs['diff']:+.1f} ± {100 * vs['se']:.1f}"
        )
        row = f"| {label} | {_pct(m['accuracy'])} | {diff} | {_pct(m.get('gap_closed'))} |"
        if seen:
            row += f" {_pct(seen.get(name, {}).get('accuracy'))} |"
        if has_cost:
            c = m.get("mean_cost_usd")
            row += f" {'–' if c is None else f'{c:.6f}'} |"
        shares = m.get("choice_share", {})
        top = sorted(shares.items(), key=lambda kv: -kv[1])[:2]
        row += " " + (", ".join(f"{k} {100 * v:.0f}%" for k, v in top) if top else "–") + " |"
        lines.append(row)
    return "\n".join(lines)


def _unseen_table(report: dict[str, Any]) -> str:
    stats = report.get("unseen", {}).get("model_sat", {})
    if not stats:
        return ""
    lines = [
        "| unseen model | its accuracy % | routed to it % | accuracy when routed % | oracle would route % |",
        "|---|---|---|---|---|",
    ]
    for m, s in stats.items():
        lines.append(
            f"| {m} | {_pct(s['accuracy'])} | {_pct(s['routed_share'])} | {_pct(s['accuracy_when_routed'])} | {_pct(s['oracle_share'])} |"
        )
    return "\n".join(lines)


def _breakdown_table(report: dict[str, Any], key: str) -> str:
    ms, bs = report["methods"]["model_sat"].get(key, {}), report["methods"]["best_single"].get(key, {})
    orc = report["methods"]["oracle"].get(key, {})
    if len(ms) <= 1:
        return ""
    lines = [f"| {key.replace('per_', '')} | Model-SAT % | best single % | oracle % |", "|---|---|---|---|"]
    for k in ms:
        lines.append(f"| {k} | {_pct(ms[k])} | {_pct(bs.get(k))} | {_pct(orc.get(k))} |")
    return "\n".join(lines)


def _markdown(report: dict[str, Any]) -> str:
    parts = [
        f"# Routing report: zoo `{report['zoo']}` ({report['split']} split)",
        "",
        f"- held-out questions: {report['n_questions']}; candidate models: {len(report['models'])}",
        f"- unseen in router training: {', '.join(report['unseen_models']) or 'none'}",
        f"- aptitude test: {report['aptitude']['notes']}",
        f"- checkpoint: `{report.get('checkpoint')}`",
        "",
        "## Routed accuracy",
        "",
        comparison_table(report),
        "",
    ]
    serving = report.get("serving")
    if serving is not None:
        parts += ["## Serving stage (held-out instructions through the OpenAI-compatible API)", ""]
        if "error" in serving:
            parts += [f"**Failed**: {serving['error']} (log: `{serving['log']}`)", ""]
        else:
            parts += [
                f"- {serving['n_questions']} instructions, model `auto`, {serving['concurrency']} clients: "
                f"accuracy {_pct(serving['accuracy'])} % by recorded outcomes "
                f"({'equal to' if serving['matches_eval'] else 'different from'} the evaluation above); "
                f"{serving['requests_per_s']:.1f} requests/s, p50 {serving['latency_ms_p50']:.0f} ms, "
                f"p95 {serving['latency_ms_p95']:.0f} ms; deploy {serving['deploy_seconds']:.0f} s",
                "",
            ]
    ut = _unseen_table(report)
    if ut:
        parts += [
            "## Models unseen in training (they joined through their capability profile only)",
            "",
            ut,
            "",
        ]
    rule = report.get("decision_rule")
    if rule:
        margin = rule["defer_margin"]
        parts += [
            "## Decision rule",
            "",
            (
                f"Anchor and defer: the anchor is `{rule['anchor']}` (best estimated accuracy); another candidate "
                f"is chosen only when its p(correct) is higher by more than δ = {margin:g} (chosen on validation)."
                if margin > 0
                else "argmax of p(correct) (anchor-and-defer margin δ = 0, chosen on validation)."
            ),
            "",
        ]
    cal = report.get("calibration")
    if cal:
        parts += [
            "## Calibration of the router's p(correct) (held-out instruction × model pairs)",
            "",
            "| models | pairs | ECE % | reliability: mean p → observed accuracy, per bin |",
            "|---|---|---|---|",
        ]
        for k, c in cal.items():
            curve = ", ".join(f"{100 * b['p_mean']:.0f}→{100 * b['y_mean']:.0f}" for b in c["bins"])
            parts.append(f"| {k} | {c['n']} | {100 * c['ece']:.1f} | {curve} |")
        parts.append("")
    for key in ("per_benchmark", "per_category"):
        t = _breakdown_table(report, key)
        if t:
            parts += [f"## Breakdown {key.replace('per_', 'per ')}", "", t, ""]
    share = report["methods"]["model_sat"]["choice_share"]
    parts += [
        "## How often each model is chosen by Model-SAT",
        "",
        "| model | share % | oracle share % |",
        "|---|---|---|",
    ]
    orc = report["methods"]["oracle"]["choice_share"]
    for m in report["models"]:
        parts.append(f"| {m} | {_pct(share.get(m, 0.0))} | {_pct(orc.get(m, 0.0))} |")
    parts.append("")
    if "cost_sweep" in report:
        cs = report["cost_sweep"]
        match = cs["cost_to_match_best_single_usd"]
        parts += [
            "## Cost-aware routing (utility = p(correct) − λ·cost)",
            "",
            f"- best single model: {_pct(cs['best_single']['accuracy'])}% at ${cs['best_single']['mean_cost_usd']:.6f}/query",
            f"- Model-SAT reaches that accuracy at ${match:.6f}/query (read off this sweep, in hindsight)"
            if match is not None
            else "- Model-SAT does not reach the best single model's accuracy on this curve",
            "",
        ]
        chosen = cs.get("chosen_on_validation") or {}
        for key, what in (
            ("match_best_single", "to match the best single model"),
            ("at_30pct_cost", "at 30 % of its cost"),
        ):
            if key in chosen:
                c = chosen[key]
                parts.append(
                    f"- λ chosen on validation {what}: {_pct(c['accuracy'])}% at ${c['mean_cost_usd']:.6f}/query "
                    f"({100 * c['cost_share_of_best_single']:.0f} % of the best single model's cost)"
                )
        parts += [
            "",
            "| λ (1/USD) | accuracy % | mean cost $/query |",
            "|---|---|---|",
        ]
        for pt in cs["model_sat"][:: max(1, len(cs["model_sat"]) // 12)]:
            parts.append(f"| {pt['lambda']:.3g} | {_pct(pt['accuracy'])} | {pt['mean_cost_usd']:.6f} |")
        parts.append("")
    for n in report.get("notes", []):
        parts.append(f"> note: {n}")
    parts += ["", "Plots: " + ", ".join(f"`{p}`" for p in report.get("plots", []))]
    return "\n".join(parts) + "\n"


def _plots(report: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    methods = report["methods"]
    names = [n for n in METHOD_ORDER if n in methods]
    fig, ax = plt.subplots(figsize=(8, 4))
    vals = [100 * methods[n]["accuracy"] for n in names]
    colors = ["#999999" if n == "oracle" else "#d62728" if n == "model_sat" else "#1f77b4" for n in names]
    ax.barh([method_label(n) for n in names][::-1], vals[::-1], color=colors[::-1])
    for i, v in enumerate(vals[::-1]):
        ax.text(v + 0.3, i, f"{v:.1f}", va="center", fontsize=8)
    ax.set_xlabel("routed accuracy on held-out questions (%)")
    ax.set_xlim(max(0, min(vals) - 10), 100)
    ax.set_title(
        f"{report['zoo']}: {report['n_questions']} held-out questions, {len(report['models'])} models"
    )
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=120)
    plt.close(fig)
    files.append("accuracy.png")

    share, orc = methods["model_sat"]["choice_share"], methods["oracle"]["choice_share"]
    models = report["models"]
    fig, ax = plt.subplots(figsize=(9, max(3, 0.28 * len(models))))
    ys = range(len(models))
    ax.barh(
        [y + 0.2 for y in ys],
        [100 * share.get(m, 0) for m in models],
        height=0.4,
        label="Model-SAT",
        color="#d62728",
    )
    ax.barh(
        [y - 0.2 for y in ys],
        [100 * orc.get(m, 0) for m in models],
        height=0.4,
        label="oracle",
        color="#999999",
    )
    ax.set_yticks(list(ys))
    ax.set_yticklabels(
        [m + (" (unseen)" if m in report["unseen_models"] else "") for m in models], fontsize=7
    )
    ax.invert_yaxis()
    ax.set_xlabel("share of instructions routed to the model (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "choice_share.png", dpi=120)
    plt.close(fig)
    files.append("choice_share.png")

    for key in ("per_category", "per_benchmark"):
        ms = methods["model_sat"].get(key, {})
        if len(ms) > 1:
            bs, oc = methods["best_single"][key], methods["oracle"][key]
            labels = list(ms)
            fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(labels)), 4))
            x = range(len(labels))
            ax.bar(
                [i - 0.27 for i in x],
                [100 * bs[k] for k in labels],
                width=0.27,
                label="best single",
                color="#1f77b4",
            )
            ax.bar(list(x), [100 * ms[k] for k in labels], width=0.27, label="Model-SAT", color="#d62728")
            ax.bar(
                [i + 0.27 for i in x],
                [100 * oc[k] for k in labels],
                width=0.27,
                label="oracle",
                color="#999999",
            )
            ax.set_xticks(list(x))
            ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
            ax.set_ylabel("accuracy (%)")
            ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, 1.12), frameon=False)
            fig.tight_layout()
            fig.savefig(out / f"{key}.png", dpi=120)
            plt.close(fig)
            files.append(f"{key}.png")
            break

    if "cost_sweep" in report:
        cs = report["cost_sweep"]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.plot(
            [p["mean_cost_usd"] for p in cs["model_sat"]],
            [100 * p["accuracy"] for p in cs["model_sat"]],
            "-o",
            ms=3,
            color="#d62728",
            label="Model-SAT (p − λ·cost sweep)",
        )
        for m, v in cs["single_models"].items():
            ax.scatter(v["mean_cost_usd"], 100 * v["accuracy"], s=18, color="#1f77b4")
            ax.annotate(m.split("/")[-1], (v["mean_cost_usd"], 100 * v["accuracy"]), fontsize=6)
        ax.set_xscale("log")
        ax.set_xlabel("mean cost per query (USD, log scale)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{report['zoo']}: accuracy–cost trade-off")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "cost_accuracy.png", dpi=120)
        plt.close(fig)
        files.append("cost_accuracy.png")
    return files


def write_report(report: dict[str, Any], out_dir: str | Path) -> Path:
    """Write `report.json`, `report.md` and plots to `out_dir` in one atomic rename."""
    out_dir = Path(out_dir)
    with atomic_output_dir(out_dir) as tmp:
        report["plots"] = _plots(report, tmp)
        (tmp / "report.json").write_text(json.dumps(report, indent=1))
        (tmp / "report.md").write_text(_markdown(report))
    return out_dir
