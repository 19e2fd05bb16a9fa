"""`obskit snapshot show`: an archive's verdicts and sections in the terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from obskit.inert import inert
from obskit.output import escape

if TYPE_CHECKING:
    from rich.console import RenderableType

_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim", "ok": "green"}


def render(index: dict[str, Any], path: str = "") -> RenderableType:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    def t(value: Any) -> str:
        return escape(inert(str(value)))

    parts: list[Any] = []
    targets = ", ".join(f"{x.get('role')} {x.get('pid')}" for x in index.get("targets", []))
    parts.append(Text.from_markup(f"[bold]obskit snapshot[/] {t(path)}  targets: {t(targets) or '-'}"))
    if index.get("interrupted"):
        parts.append(Text("interrupted: the archive holds what was collected until then", style="yellow"))
    vt = Table(title="Verdicts", title_justify="left", show_header=False, box=None, padding=(0, 1))
    for v in index.get("verdicts", []):
        sev = str(v.get("severity", "info"))
        vt.add_row(Text(sev, style=_STYLE.get(sev, "")), Text(inert(str(v.get("title", "")))),
                   Text(inert(str(v.get("detail", ""))), style="dim"))
    parts.append(vt if index.get("verdicts") else Text("no verdicts"))
    parts.extend(Text("hint: " + inert(str(h)), style="yellow") for h in index.get("hints", []))
    st = Table(title="Sections", title_justify="left", box=None, padding=(0, 1))
    for col in ("section", "status", "files", "reason / fix"):
        st.add_column(col)
    for s in index.get("sections", []):
        status = str(s.get("status", ""))
        why = " — ".join(str(x) for x in (s.get("reason", ""), s.get("fix", "")) if x)
        st.add_row(inert(str(s.get("name", ""))), Text(status, style=_STYLE.get(status, "yellow")),
                   inert(" ".join(s.get("files", []))), inert(why))
    parts.append(st)
    acc = index.get("accounting") or {}
    peak = acc.get("peak_rss_bytes")
    parts.append(Text(f"elapsed {acc.get('elapsed_s', 0):.1f}s; obskit peak "
                      f"{peak / 1048576:.0f} MiB" if isinstance(peak, int) else "", style="dim"))
    return Group(*parts)
