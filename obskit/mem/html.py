"""Self-contained HTML report of `obskit mem` (inline SVG, no script, no network; all text escaped)."""

from __future__ import annotations

import html
import time

from obskit.mem.collect import MemReport, Series
from obskit.mem.smaps import KINDS
from obskit.output import human_bytes

COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
VERDICT_COLOR = {"steady": "#2ca02c", "growing": "#e6a700", "leak-suspected": "#d62728"}


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def chart(series: list[tuple[str, list[float], list[float]]], width: int = 860, height: int = 280) -> str:
    """An SVG line chart: (label, t, bytes) per line."""
    pts = [(t, y) for _, ts, ys in series for t, y in zip(ts, ys, strict=False)]
    if not pts:
        return "<p>no samples</p>"
    t_max = max(t for t, _ in pts) or 1.0
    y_min = min(y for _, y in pts)
    y_max = max(y for _, y in pts)
    if y_max == y_min:
        y_max = y_min + 1
    pad_l, pad_b, pad_t, pad_r = 80, 30, 10, 10
    w, h = width - pad_l - pad_r, height - pad_b - pad_t

    def x(t: float) -> float:
        return pad_l + t / t_max * w

    def y(v: float) -> float:
        return pad_t + h - (v - y_min) / (y_max - y_min) * h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    for i in range(5):
        v = y_min + (y_max - y_min) * i / 4
        out.append(f'<line x1="{pad_l}" x2="{pad_l + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{pad_l - 6}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11">{_e(human_bytes(v))}</text>')
    for i in range(5):
        t = t_max * i / 4
        out.append(f'<text x="{x(t):.1f}" y="{height - 8}" text-anchor="middle" font-size="11">{t:.1f}s</text>')
    for n, (label, ts, ys) in enumerate(series):
        color = COLORS[n % len(COLORS)]
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(ts, ys, strict=False))
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"><title>{_e(label)}</title></polyline>')
        out.append(f'<text x="{pad_l + 8}" y="{pad_t + 14 + 14 * n}" font-size="12" fill="{color}">{_e(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def render_html(r: MemReport) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>obskit mem: pid {_e(r.pid)}</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
        "td,th{padding:2px 10px;text-align:right;border-bottom:1px solid #eee}td.l,th.l{text-align:left}"
        ".v{font-weight:bold}code{font-size:12px}</style></head><body>",
        f"<h1>Memory of pid {_e(r.pid)}</h1>",
        f"<p>obskit mem, {_e(time.strftime('%Y-%m-%d %H:%M:%S %Z'))}</p>",
        "<table><tr><th>pid</th><th class=l>role</th><th>RSS</th><th>PSS</th><th>USS</th><th>swap</th>"
        + "".join(f"<th>{_e(k)}</th>" for k in KINDS)
        + "<th class=l>command</th></tr>",
    ]
    for pm in r.processes:
        kinds = "".join(f"<td>{_e(human_bytes(pm.kinds[k].rss)) if pm.kinds else '-'}</td>" for k in KINDS)
        parts.append(
            f"<tr><td>{pm.pid}</td><td class=l>{_e(pm.role)}</td><td>{_e(human_bytes(pm.total.rss))}</td>"
            f"<td>{_e(human_bytes(pm.total.pss))}</td><td>{_e(human_bytes(pm.total.uss))}</td>"
            f"<td>{_e(human_bytes(pm.total.swap))}</td>{kinds}<td class=l><code>{_e(pm.command)}</code></td></tr>"
        )
    parts.append("</table>")
    w = r.watch
    if w is not None:
        color = VERDICT_COLOR.get(w.verdict, "#666")
        parts.append(f"<h2>Growth: <span class=v style='color:{color}'>{_e(w.verdict)}</span></h2>")
        parts.append(f"<p>{w.duration_s:.1f}s sampled every {w.interval_s:g}s{' (interrupted)' if w.interrupted else ''}</p>")
        lines: list[tuple[str, list[float], list[float]]] = [
            (f"pid {s.pid} RSS", s.t, [float(v) for v in s.rss]) for s in w.series if s.t
        ]
        if w.total_pss is not None:
            lines.append(("tree PSS", w.total_pss.t, [float(v) for v in w.total_pss.pss]))
        parts.append(chart(lines))
        shown: list[tuple[str, Series]] = [(f"pid {s.pid} RSS", s) for s in w.series]
        if w.total_pss is not None:
            shown.append(("tree PSS", w.total_pss))
        for label, s in shown:
            if s.fit is None:
                continue
            parts.append(f"<h3>{_e(label)}: {_e(s.fit.verdict)}</h3><ul>")
            parts.extend(f"<li>{_e(e)}</li>" for e in s.fit.evidence)
            parts.append("</ul>")
        if w.type_growth:
            parts.append("<h3>Python types that grew</h3><table><tr><th class=l>type</th><th>start</th><th>end</th><th>growth</th></tr>")
            parts.extend(
                f"<tr><td class=l>{_e(g.type)}</td><td>{g.start}</td><td>{g.end}</td><td>+{g.delta}</td></tr>"
                for g in w.type_growth
            )
            parts.append("</table>")
    if r.python is not None:
        parts.append(f"<p>Python objects tracked by the GC: {r.python.tracked_objects}</p>")
    parts.extend(f"<p><i>{_e(n)}</i></p>" for n in r.notes)
    parts.append("</body></html>")
    return "\n".join(parts)
