"""An assessment report as one self-contained HTML page: candidate beside production,
confusion matrices and per-class charts as inline SVG, every gate check. No scripts,
no fonts or styles from the network."""

from __future__ import annotations

from html import escape
from typing import Any

from inspector.report_curves import num, operating_point_html, pct

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1d232a;max-width:1200px}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem} table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:right} th{background:#f3f5f7}
td:first-child,th:first-child{text-align:left} .pass{color:#116329} .fail{color:#a40e26;font-weight:600}
.verdict{font-size:1.1rem;padding:.8rem 1rem;border-radius:6px;background:#f3f5f7}
.blessed{background:#dafbe1} .refused{background:#ffebe9} .row{display:flex;gap:2rem;flex-wrap:wrap}
"""


def confusion_svg(confusion: dict[str, Any], title: str) -> str:
    """A heat-map of a confusion matrix (rows: true class, columns: predicted)."""
    labels, matrix = confusion["labels"], confusion["matrix"]
    n, cell, margin = len(labels), 34, 110
    size = margin + n * cell + 10
    peak = max((max(row) for row in matrix), default=1) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size + 20}" role="img" '
        f'aria-label="{escape(title)}"><text x="0" y="14" font-size="13" font-weight="600">{escape(title)}</text>'
    ]
    for i, label in enumerate(labels):
        y = margin + i * cell + cell / 2 + 4
        parts.append(
            f'<text x="{margin - 6}" y="{y}" font-size="11" text-anchor="end">{escape(label)}</text>'
        )
        x = margin + i * cell + cell / 2
        parts.append(
            f'<text x="{x}" y="{margin - 6}" font-size="11" text-anchor="start" '
            f'transform="rotate(-45 {x} {margin - 6})">{escape(label)}</text>'
        )
        for j in range(n):
            value = matrix[i][j]
            shade = value / peak
            colour = (
                f"rgb({int(255 - 180 * shade)},{int(255 - 120 * shade)},{int(255 - 40 * shade)})"
            )
            if i != j and value:
                colour = f"rgb(255,{int(235 - 150 * shade)},{int(235 - 150 * shade)})"
            parts.append(
                f'<rect x="{margin + j * cell}" y="{margin + i * cell}" width="{cell - 2}" height="{cell - 2}" '
                f'fill="{colour}"><title>true {escape(labels[i])}, predicted {escape(labels[j])}: {value}</title></rect>'
                f'<text x="{margin + j * cell + cell / 2 - 1}" y="{margin + i * cell + cell / 2 + 4}" '
                f'font-size="11" text-anchor="middle">{value}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def per_class_svg(candidate: dict[str, Any], production: dict[str, Any] | None, metric: str) -> str:
    """Paired bars of one per-class metric (candidate dark, production light)."""
    labels = list(candidate["per_class"])
    width, row, left = 460, 22, 120
    height = 30 + len(labels) * row
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="per-class {metric}"><text x="0" y="14" font-size="13" font-weight="600">'
        f"{escape(metric)} per class (dark: candidate, light: production)</text>"
    ]
    scale = width - left - 50
    for i, label in enumerate(labels):
        y = 24 + i * row
        mine = float(candidate["per_class"][label][metric])
        parts.append(
            f'<text x="{left - 6}" y="{y + 13}" font-size="11" text-anchor="end">{escape(label)}</text>'
        )
        parts.append(
            f'<rect x="{left}" y="{y}" width="{mine * scale:.1f}" height="8" fill="#0969da"/>'
        )
        theirs = (production or {}).get("per_class", {}).get(label)
        if theirs is not None:
            parts.append(
                f'<rect x="{left}" y="{y + 9}" width="{float(theirs[metric]) * scale:.1f}" height="8" fill="#9ecbff"/>'
            )
        parts.append(f'<text x="{left + scale + 4}" y="{y + 9}" font-size="10">{mine:.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _metrics_table(candidate: dict[str, Any], production: dict[str, Any] | None) -> str:
    rows = [
        ("images", lambda m: str(m["count"])),
        ("accuracy", lambda m: pct(m["accuracy"])),
        ("macro-F1", lambda m: num(m["macro_f1"])),
        ("defect escape rate", lambda m: pct(m["escape_rate"])),
        ("false-reject rate", lambda m: pct(m["false_reject_rate"])),
        ("calibration error (ECE)", lambda m: num(m["ece"])),
    ]
    head = "<tr><th>metric</th><th>candidate</th><th>production</th></tr>"
    body = "".join(
        f"<tr><td>{name}</td><td>{fn(candidate)}</td><td>{fn(production) if production else '–'}</td></tr>"
        for name, fn in rows
    )
    return f"<table>{head}{body}</table>"


def render(report: dict[str, Any], *, model_name: str = "inspector") -> str:
    """The whole report page."""
    title = f"{model_name} version {report['candidate_version']}"
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>{render_body(report, model_name=model_name)}</body></html>"
    )


def render_body(report: dict[str, Any], *, model_name: str = "inspector") -> str:
    """The report's content, to stand alone or inside the console."""
    candidate, production = report["candidate"], report.get("production")
    decision = report["decision"]
    title = f"{model_name} version {report['candidate_version']}"
    if candidate is None or decision is None:  # it could not even be evaluated
        return (
            f'<h1>{escape(title)}</h1><p class="verdict refused">{escape(report["sentence"])}</p>'
        )

    versus = (
        f"production version {report['baseline_version']}"
        if production
        else "no production model yet"
    )
    sections = [
        f"<h1>{escape(title)} — assessment {escape(report['report_id'])}</h1>",
        f"<p>Compared with {escape(versus)} on the held-out set of snapshot "
        f"<code>{escape(report['snapshot_id'])}</code>, made {escape(report['created_at'])}.</p>",
        f'<p class="verdict {"blessed" if report["blessed"] else "refused"}">{escape(report["sentence"])}</p>',
        "<h2>Model</h2><table><tr><th></th><th>candidate</th><th>production</th></tr>"
        f"<tr><td>latency per image (ms)</td><td>{num(candidate['latency_ms_per_image'], 1)}</td>"
        f"<td>{num(production['latency_ms_per_image'], 1) if production else '–'}</td></tr>"
        f"<tr><td>SavedModel size (MB)</td><td>{candidate['model_bytes'] / 1e6:.2f}</td>"
        f"<td>{production['model_bytes'] / 1e6 if production else 0:.2f}</td></tr></table>",
    ]
    sections.append(
        operating_point_html(report.get("operating_point"), candidate["slices"]["heldout"])
    )
    for name, metrics in candidate["slices"].items():
        theirs = production["slices"].get(name) if production else None
        sections.append(f"<h2>{escape(name)}</h2>{_metrics_table(metrics, theirs)}")
        charts = [confusion_svg(metrics["confusion"], "candidate: confusion")]
        if theirs:
            charts.append(confusion_svg(theirs["confusion"], "production: confusion"))
        sections.append(f'<div class="row">{"".join(charts)}</div>')
        sections.append(
            f'<div class="row">{per_class_svg(metrics, theirs, "precision")}{per_class_svg(metrics, theirs, "recall")}</div>'
        )
    checks = "".join(
        f"<tr><td>{escape(c['metric'])}</td><td>{escape(c['slice'])}</td><td>{escape(c['rule'])}</td>"
        f"<td>{c['observed']:.4f}</td><td>{c['threshold']:.4f}</td>"
        f'<td class="{"pass" if c["passed"] else "fail"}">{"pass" if c["passed"] else "FAIL"}</td></tr>'
        for c in decision["checks"]
    )
    sections.append(
        f"<h2>Gate ({escape(decision['mode'].replace('_', ' '))})</h2><p>{escape(decision['sentence'])}</p>"
        "<table><tr><th>check</th><th>slice</th><th>rule</th><th>observed</th><th>threshold</th><th></th></tr>"
        f"{checks}</table>"
    )
    shadow = report.get("shadow")
    if shadow:
        sections.append(
            "<h2>Shadow mode (live traffic)</h2><table>"
            f"<tr><td>images judged beside production</td><td>{shadow['images']}</td></tr>"
            f"<tr><td>agreement with production</td><td>{pct(shadow['agreement'])}</td></tr>"
            f"<tr><td>images labelled since</td><td>{shadow['labelled']}</td></tr>"
            f"<tr><td>accuracy on those</td><td>{pct(shadow['accuracy_on_labelled'])}</td></tr></table>"
        )
    infra = report["infra_check"]
    sections.append(
        f'<h2>Infra check</h2><p class="{"pass" if infra.get("ok") else "fail"}">'
        f"{'Loaded in a separate process and replayed its warm-up requests identically.' if infra.get('ok') else escape(str(infra.get('error')))}"
        "</p>"
    )
    return "".join(sections)
