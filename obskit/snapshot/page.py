"""``index.html`` of an archive: one offline page, verdicts first, links to every section's file.

No script at all; the only inline style is allowed by its hash in a Content-Security-Policy that
forbids every fetch (the flame graph page's approach).  Every string from the target goes through
:func:`obskit.inert.inert` and :func:`html.escape`; links point only at names obskit chose.
"""

from __future__ import annotations

import base64
import hashlib
import html
import time
from typing import Any

from obskit.inert import inert

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:72em;padding:0 1em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eee;padding:.25em .5em;
text-align:left;vertical-align:top}th{background:#f6f6f6}.error{color:#b00020;font-weight:600}
.warn{color:#a15c00;font-weight:600}.info{color:#555}.ok{color:#1b7f3a}.skipped,.failed,.interrupted,
.not-run,.partial{color:#a15c00}code{background:#f3f3f3;padding:0 .2em}.hint{background:#fff7e0;
padding:.5em .8em;border-left:4px solid #e0a800;margin:.4em 0}.muted{color:#777}
""".strip()

MIB = 1 << 20


def _e(value: Any) -> str:
    return html.escape(inert(str(value)), quote=True)


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def csp() -> str:
    return (f"default-src 'none'; style-src {_csp_hash(CSS)}; script-src 'none'; img-src 'none'; "
            "connect-src 'none'; base-uri 'none'; form-action 'none'")


def _link(name: str, files: set[str]) -> str:
    # Only names obskit wrote into the archive become links (and they are escaped all the same).
    return f'<a href="{_e(name)}">{_e(name)}</a>' if name in files else _e(name)


def render_page(index: dict[str, Any]) -> bytes:
    files = {f for s in index.get("sections", []) for f in s.get("files", [])} | {"index.json"}
    created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(index.get("created") or 0)))
    targets = index.get("targets", [])
    p: list[str] = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp())}">',
        '<meta name="generator" content="obskit">',
        f"<title>obskit snapshot {_e(created)}</title><style>{CSS}</style></head><body>",
        f"<h1>obskit snapshot — {_e(created)}</h1>",
        "<p class=\"muted\">" + _e(f"{len(targets)} target(s), profile {index.get('duration_s', 0):g}s, "
                                    f"obskit {index.get('obskit_version', '')}") + "</p>",
    ]
    if index.get("interrupted"):
        p.append('<p class="hint">Interrupted: the archive holds what was collected until then.</p>')
    p.append("<h2 id=\"verdicts\">Verdicts</h2>")
    verdicts = index.get("verdicts", [])
    if verdicts:
        p.append("<table><tr><th></th><th>Finding</th><th>Detail</th><th>Evidence</th></tr>")
        for v in verdicts:
            sev = v.get("severity", "info")
            cls = "warn" if sev == "warning" else sev if sev in ("error", "info") else "info"
            p.append(f'<tr><td class="{cls}">{_e(sev)}</td><td>{_e(v.get("title", ""))}</td>'
                     f'<td>{_e(v.get("detail", ""))}</td><td>{_link(str(v.get("file", "")), files)}</td></tr>')
        p.append("</table>")
    else:
        p.append("<p>No verdicts: see the sections below for what was collected.</p>")
    p.extend(f'<p class="hint">{_e(h)}</p>' for h in index.get("hints", []))
    p.append("<h2 id=\"targets\">Targets</h2><table><tr><th>PID</th><th>Role</th><th>UID</th><th>Workers</th>"
             "<th>Command (redacted)</th></tr>")
    p.extend(f"<tr><td>{_e(t.get('pid'))}</td><td>{_e(t.get('role'))}</td><td>{_e(t.get('uid'))}</td>"
             f"<td>{_e(' '.join(str(w) for w in t.get('workers', [])))}</td><td><code>{_e(t.get('command'))}"
             "</code></td></tr>" for t in targets)
    p.append("</table><h2 id=\"sections\">Sections</h2><table><tr><th>Section</th><th>Status</th><th>Files</th>"
             "<th>Reason / fix</th><th>Seconds</th></tr>")
    for s in index.get("sections", []):
        status = str(s.get("status", ""))
        cls = status if status in ("ok", "partial", "skipped", "failed", "interrupted", "not-run") else "info"
        why = " — ".join(x for x in (s.get("reason", ""), s.get("fix", "")) if x)
        notes = "".join(f"<br><span class=\"muted\">{_e(n)}</span>" for n in s.get("notes", [])[:20])
        links = "<br>".join(_link(f, files) for f in s.get("files", []))
        p.append(f"<tr><td>{_e(s.get('title', s.get('name', '')))}</td><td class=\"{cls}\">{_e(status)}</td>"
                 f"<td>{links}</td><td>{_e(why)}{notes}</td><td>{_e(s.get('seconds', ''))}</td></tr>")
    p.append("</table>")
    acc = index.get("accounting", {}) or {}
    p.append("<h2 id=\"accounting\">obskit's own accounting</h2><table>")
    rows = [("elapsed", f"{acc.get('elapsed_s', 0):.1f}s of a {acc.get('budget_s', 0):.0f}s budget"),
            ("peak memory (obskit)", _mib(acc.get("peak_rss_bytes"))),
            ("peak memory (largest py-spy)", _mib(acc.get("peak_children_rss_bytes"))),
            ("ptrace", "available" if acc.get("ptrace") else "refused")]
    head = acc.get("headroom")
    if head:
        rows.append(("memory headroom", f"{head.get('plan')}: {head.get('reason')}"))
    if acc.get("thin"):
        rows.append(("thin archive", acc["thin"]))
    rows.extend(("not collected", s) for s in acc.get("skipped", []))
    for k, v in rows:
        p.append(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>")
    p.append(f"</table><p class=\"muted\">Machine-readable: {_link('index.json', files)}; each JSON file is the "
             "matching command's own <code>--json</code> document.</p></body></html>")
    return "\n".join(p).encode("utf-8")


def _mib(n: Any) -> str:
    return "-" if not isinstance(n, int) else f"{n / MIB:.0f} MiB"
