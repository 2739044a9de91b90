"""The report's operating-point section: how the version's threshold was chosen, the ROC
and precision–recall curves of P(defect) on the held-out images with the chosen point
marked, and the escape / false-reject trade-off at thresholds around it. Inline SVG,
no scripts."""

from __future__ import annotations

from html import escape
from typing import Any

_W, _H, _PAD = 300, 240, 36


def pct(value: Any) -> str:
    """A rate as a percentage with one decimal ("–" when there is none)."""
    return "–" if value is None else f"{float(value):.1%}"


def num(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals ("–" when there is none)."""
    return "–" if value is None else f"{float(value):.{digits}f}"


def _xy(x: float, y: float) -> tuple[float, float]:
    return _PAD + x * (_W - _PAD - 10), _H - _PAD - y * (_H - _PAD - 20)


def curve_svg(
    points: list[tuple[float, float]],
    chosen: tuple[float, float] | None,
    title: str,
    x_label: str,
    y_label: str,
) -> str:
    """A curve on the unit square (x, y in 0-1) with the chosen point ringed."""
    path = " ".join(
        f"{'M' if i == 0 else 'L'}{px:.1f},{py:.1f}"
        for i, (px, py) in enumerate(_xy(x, y) for x, y in points)
    )
    x0, y0 = _xy(0, 0)
    x1, y1 = _xy(1, 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img" '
        f'aria-label="{escape(title)}"><text x="0" y="14" font-size="13" font-weight="600">'
        f"{escape(title)}</text>",
        f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" '
        'stroke="#d0d7de"/>',
        f'<text x="{(x0 + x1) / 2}" y="{_H - 6}" font-size="11" text-anchor="middle">'
        f"{escape(x_label)}</text>",
        f'<text x="10" y="{(y0 + y1) / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 10 {(y0 + y1) / 2})">{escape(y_label)}</text>',
        f'<path d="{path}" fill="none" stroke="#0969da" stroke-width="2"/>' if points else "",
    ]
    if chosen is not None:
        cx, cy = _xy(*chosen)
        parts.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="6" fill="none" stroke="#a40e26" '
            f'stroke-width="2"><title>the operating threshold</title></circle>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _chosen_roc(metrics: dict[str, Any]) -> tuple[float, float] | None:
    if metrics.get("false_reject_rate") is None or metrics.get("escape_rate") is None:
        return None
    return float(metrics["false_reject_rate"]), 1 - float(metrics["escape_rate"])


def operating_point_html(doc: dict[str, Any] | None, heldout: dict[str, Any]) -> str:
    """The section: the rule and its note, the curves and the trade-off table."""
    if not doc:
        return ""
    detection = heldout.get("detection") or {}
    point = (
        f"<p>Threshold on P(defect): <strong>{num(doc.get('threshold'))}</strong> "
        f"(target escape rate {pct(doc.get('target_escape_rate'))}; rule "
        f"<code>{escape(str(doc.get('rule')))}</code>). {escape(str(doc.get('note', '')))}. "
        f"On its {doc.get('validation_defective', 0)} defective and "
        f"{doc.get('validation_good', 0)} good validation images: escape rate "
        f"{pct(doc.get('escape_rate'))}, false-reject rate {pct(doc.get('false_reject_rate'))}."
        "</p>"
    )
    if not detection.get("roc"):
        return f"<h2>Operating point</h2>{point}"
    roc = [(p["fpr"], p["tpr"]) for p in detection["roc"]]
    pr = [(p["recall"], p["precision"]) for p in detection["pr"]]
    chosen = _chosen_roc(heldout)
    precision = _precision_at(heldout)
    charts = curve_svg(
        [(0.0, 0.0), *roc],
        chosen,
        f"ROC, held-out (AUROC {num(detection.get('auroc'))})",
        "false-reject rate",
        "share of defects caught",
    ) + curve_svg(
        pr,
        (chosen[1], precision) if chosen and precision is not None else None,
        f"precision–recall (AP {num(detection.get('average_precision'))})",
        "share of defects caught",
        "precision",
    )
    rows = "".join(
        f"<tr><td>{num(r['threshold'])}</td><td>×{r['odds_factor']:g}</td>"
        f"<td>{pct(r['escape_rate'])}</td><td>{pct(r['false_reject_rate'])}</td></tr>"
        for r in detection.get("trade_off", [])
    )
    table = (
        "<table><tr><th>threshold</th><th>odds vs chosen</th><th>escape rate</th>"
        f"<th>false-reject rate</th></tr>{rows}</table>"
    )
    return (
        f'<h2>Operating point</h2>{point}<div class="row">{charts}</div>'
        f"<p>Moving the threshold, on the held-out images:</p>{table}"
    )


def _precision_at(metrics: dict[str, Any]) -> float | None:
    """Precision at the threshold: the precision–recall point of the lowest score that is
    still flagged (the curve's points are at the distinct scores)."""
    threshold = metrics.get("threshold")
    points = (metrics.get("detection") or {}).get("pr", [])
    flagged = [p for p in points if threshold is not None and p["threshold"] >= threshold]
    return min(flagged, key=lambda p: p["threshold"])["precision"] if flagged else None
