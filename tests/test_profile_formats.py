"""Profile output formats and renderers: obskit json, folded stacks, speedscope, pprof, HTML, diff.

Each writer is checked by an independent reader: jsonschema with speedscope's schema,
google.protobuf with a descriptor of profile.proto built here, `go tool pprof`, the
collapsed parser, and the flame-graph page run under node with a DOM that refuses innerHTML.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import CAPTURED, Target, needs_ptrace, require_tool

from obskit.errors import ExitCode, InputError, UsageError
from obskit.profile import formats
from obskit.profile.diff import diff_profiles
from obskit.profile.formats import format_for_path, load_profile, render, write_profile
from obskit.profile.html import render_diff_html, render_html
from obskit.profile.model import Frame, Profile, parse_collapsed
from obskit.profile.pprof import encode_pprof
from obskit.profile.speedscope import to_speedscope

DATA = CAPTURED / "profile"
VIEWER = DATA / "run_viewer.js"
HOSTILE_FUNC = "</script><script>alert(1)</script>"
HOSTILE_FILE = "<img src=x onerror=alert(2)>.py"
HOSTILE_THREAD = "<b>t&amp;\u2028x</b>"


def F(name: str, file: str = "app.py", line: int = 1) -> Frame:
    return Frame(name, file, line)


def make_profile(stacks: dict[tuple[str, ...], int], *, pid: int = 100, tid: int = 1, rate: float = 100.0,
                 profile: Profile | None = None) -> Profile:
    prof = profile or Profile()
    prof.metadata.requested_rate = rate
    prof.ensure_process(pid, cmdline=f"python app{pid}.py")
    for names, count in stacks.items():
        prof.add_stack(pid, tid, [F(n, line=10 + i) for i, n in enumerate(names)], count)
    return prof


def rich_profile() -> Profile:
    """Two processes, three threads, hostile names, full metadata."""
    prof = Profile()
    m = prof.metadata
    m.obskit_version, m.sampler, m.start_time, m.duration_s = "0.1.0", "py-spy 0.4.3", 1_790_000_000.0, 5.0
    m.requested_rate, m.effective_rate, m.mode, m.subprocesses = 100, 97.5, "nonblocking", True
    m.target_pid, m.target_cmdline, m.python_version, m.host = 100, "gunicorn app:wsgi & <x>", "3.11.7", "h1"
    m.samples_attempted, m.samples_valid, m.samples_failed, m.pause_share = 500, 480, 20, 0.012
    m.warnings = ["sampler fell behind <script>"]
    prof.ensure_process(100, cmdline="gunicorn: master", role="gunicorn-master")
    prof.ensure_process(101, cmdline="gunicorn: worker", role="gunicorn-worker")
    prof.ensure_thread(100, 1, "MainThread")
    prof.ensure_thread(101, 2, "MainThread")
    prof.ensure_thread(101, 3, HOSTILE_THREAD)
    main, handle = F("main", "/srv/app/main.py", 5), F("handle", "/srv/app/views.py", 40)
    hot = F("compute_checksum", "/srv/app/hot.py", 12)
    lib = F("loads", "/usr/lib/python3.11/site-packages/json/decoder.py", 337)
    evil = Frame(HOSTILE_FUNC, HOSTILE_FILE, 7)
    prof.add_stack(100, 1, [main, F("sleep", "/srv/app/main.py", 9)], 40)
    prof.add_stack(101, 2, [main, handle, hot], 250)
    prof.add_stack(101, 2, [main, handle, lib], 90)
    prof.add_stack(101, 3, [main, evil], 100)
    return prof


# -- names and formats -------------------------------------------------------------

@pytest.mark.parametrize(("name", "fmt"), [
    ("out.html", "html"), ("OUT.HTM", "html"), ("a.b/p.speedscope.json", "speedscope"), ("p.collapsed", "collapsed"),
    ("p.folded", "collapsed"), ("p.txt", "collapsed"), ("p.pb.gz", "pprof"), ("p.pprof", "pprof"), ("p.json", "json"),
])
def test_format_for_path(name: str, fmt: str) -> None:
    assert format_for_path(name) == fmt


def test_format_for_path_unknown_and_explicit() -> None:
    with pytest.raises(UsageError) as e:
        format_for_path("profile.svg")
    assert e.value.exit_code == ExitCode.USAGE
    assert ".speedscope.json" in e.value.one_line() and ".pb.gz" in e.value.one_line()
    assert format_for_path("profile.svg", "pprof") == "pprof"
    with pytest.raises(UsageError):
        format_for_path("p.json", "svg")


def test_json_round_trip(tmp_path: Path) -> None:
    prof = rich_profile()
    path = tmp_path / "p.json"
    n = write_profile(prof, str(path))
    assert n == path.stat().st_size
    back = load_profile(str(path))
    assert back.to_dict() == {**prof.to_dict(), "metadata": {**prof.to_dict()["metadata"], "source_format": "json"}}


def test_collapsed_is_flamegraph_pl_input(tmp_path: Path) -> None:
    prof = rich_profile()
    prof.add_stack(101, 2, [F("semi;colon"), F("new\nline")], 3)
    path = tmp_path / "p.collapsed"
    write_profile(prof, str(path))
    lines = path.read_text().splitlines()
    # flamegraph.pl / inferno: "frame;frame;frame COUNT", one stack per line, nothing else.
    assert all(re.fullmatch(r"[^;\n]+(;[^;\n]+)* \d+", ln) for ln in lines), lines
    assert sum(int(ln.rsplit(" ", 1)[1]) for ln in lines) == prof.total_samples
    back = parse_collapsed(lines)
    assert back.total_samples == prof.total_samples
    assert {(p.pid, p.cmdline) for p in back.processes} >= {(101, "gunicorn: worker")}
    assert back.top_functions(1)[0].name == "compute_checksum"
    # Separators inside names are replaced, never allowed to split a stack.
    assert back.thread_name(101, 3) == "<b>t&amp: x</b>"
    assert {f.name for f in back.frames} >= {"semi:colon", "new line", HOSTILE_FUNC}


# -- speedscope ----------------------------------------------------------------------

def _validate_speedscope(doc: dict[str, Any]) -> None:
    import jsonschema

    schema = json.loads((DATA / "speedscope-schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(doc, schema)


def test_speedscope_valid_and_reloads(tmp_path: Path) -> None:
    prof = rich_profile()
    path = tmp_path / "p.speedscope.json"
    write_profile(prof, str(path))
    doc = json.loads(path.read_text())
    _validate_speedscope(doc)
    assert [p["name"] for p in doc["profiles"]] == ["pid 101 tid 2 MainThread", f"pid 101 tid 3 {HOSTILE_THREAD}",
                                                    "pid 100 tid 1 MainThread"]
    assert {"name": "compute_checksum", "file": "/srv/app/hot.py", "line": 12} in doc["shared"]["frames"]
    back = load_profile(str(path))
    assert back.total_samples == prof.total_samples
    assert [(f.name, f.self_count) for f in back.top_functions(3)] == [(f.name, f.self_count)
                                                                       for f in prof.top_functions(3)]
    assert back.thread_name(101, 3) == HOSTILE_THREAD


def test_speedscope_schema_rejects_broken_files() -> None:
    # The schema copy must be able to fail: a test against a schema that accepts anything proves nothing.
    import jsonschema

    good = to_speedscope(rich_profile())
    for broken in ({**good, "profiles": [{**good["profiles"][0], "unit": "furlongs"}]},
                   {**good, "shared": {"frames": [{"file": "x.py"}]}},
                   {k: v for k, v in good.items() if k != "$schema"}):
        with pytest.raises(jsonschema.ValidationError):
            _validate_speedscope(broken)


def test_reads_pyspy_speedscope() -> None:
    prof = load_profile(str(DATA / "pyspy-speedscope.json"))
    # py-spy writes one weight of 1/rate seconds per sample: counts and rate come back exactly.
    assert prof.total_samples == 100
    assert prof.metadata.requested_rate == pytest.approx(50)
    assert prof.top_functions(1)[0].name == "hot"
    assert {t.name for t in prof.threads} == {"MainThread", "worker-1"}
    # Recorded with -t: py-spy puts a `thread (TID): name` frame at the root; it is the thread, not a function.
    assert {f.name for f in prof.top_functions(None)} == {"hot", "worker", "Thread.run", "Thread._bootstrap_inner",
                                                          "Thread._bootstrap", "<module>"}
    sub = load_profile(str(DATA / "pyspy-speedscope-subprocesses.json"))
    # Recorded with -s: a `process PID:"cmd"` root frame gives the process and its command line.
    assert [(p.pid, p.cmdline) for p in sub.processes] == [(10306, "/root/.pyenv/versions/3.11.7/bin/python t.py")]
    assert {(t.pid, t.tid, t.name) for t in sub.threads} == {(10306, 10306, "MainThread"), (10306, 10348, "worker-1")}
    assert not any(f.name.startswith("process ") for f in sub.top_functions(None))


def test_speedscope_nested_process_frames(tmp_path: Path) -> None:
    # py-spy -s roots a grandchild's stacks with every ancestor's process frame: the last one is the sampled process.
    frames = [{"name": 'process 1:"gunicorn: master"'}, {"name": 'process 2:"gunicorn: worker"'},
              {"name": "thread (0x1f): MainThread"}, {"name": "serve", "file": "w.py", "line": 9}]
    doc = {"$schema": "https://www.speedscope.app/file-format-schema.json", "shared": {"frames": frames},
           "profiles": [{"type": "sampled", "name": 'Process 2 Thread 31 "MainThread"', "unit": "seconds",
                         "startValue": 0, "endValue": 0.03, "samples": [[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3]],
                         "weights": [0.01, 0.01, 0.01]}]}
    _validate_speedscope(doc)
    path = tmp_path / "nested.json"
    path.write_text(json.dumps(doc))
    prof = load_profile(str(path))
    assert [(s.pid, s.tid, s.count) for s in prof.samples] == [(2, 31, 3)]
    assert [prof.frames[i].name for i in prof.samples[0].frames] == ["serve"]
    assert prof.process(2) is not None and prof.process(2).cmdline == "gunicorn: worker"  # type: ignore[union-attr]
    assert prof.metadata.requested_rate == pytest.approx(100)


def test_reads_evented_speedscope(tmp_path: Path) -> None:
    doc = {"$schema": "https://www.speedscope.app/file-format-schema.json",
           "shared": {"frames": [{"name": "main"}, {"name": "work", "file": "w.py", "line": 3}]},
           "profiles": [{"type": "evented", "name": "trace", "unit": "milliseconds", "startValue": 0, "endValue": 10,
                         "events": [{"type": "O", "frame": 0, "at": 0}, {"type": "O", "frame": 1, "at": 2},
                                    {"type": "C", "frame": 1, "at": 8}, {"type": "C", "frame": 0, "at": 10}]}]}
    _validate_speedscope(doc)
    path = tmp_path / "evented.json"
    path.write_text(json.dumps(doc))
    prof = load_profile(str(path))
    top = {f.name: f for f in prof.top_functions(None)}
    assert top["work"].self_share == pytest.approx(0.6)
    assert top["main"].total_share == pytest.approx(1.0)
    assert prof.thread_name(0, 1) == "trace"


# -- pprof ---------------------------------------------------------------------------

def _pprof_class() -> Any:
    """profile.proto's messages from a descriptor built here: independent of obskit's encoder."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    T = descriptor_pb2.FieldDescriptorProto
    u64, i64, boolean, string, msg = T.TYPE_UINT64, T.TYPE_INT64, T.TYPE_BOOL, T.TYPE_STRING, T.TYPE_MESSAGE
    rep, opt = T.LABEL_REPEATED, T.LABEL_OPTIONAL
    spec: dict[str, list[tuple[str, int, int, int, str]]] = {
        "Profile": [("sample_type", 1, msg, rep, "ValueType"), ("sample", 2, msg, rep, "Sample"),
                    ("mapping", 3, msg, rep, "Mapping"), ("location", 4, msg, rep, "Location"),
                    ("function", 5, msg, rep, "Function"), ("string_table", 6, string, rep, ""),
                    ("drop_frames", 7, i64, opt, ""), ("keep_frames", 8, i64, opt, ""),
                    ("time_nanos", 9, i64, opt, ""), ("duration_nanos", 10, i64, opt, ""),
                    ("period_type", 11, msg, opt, "ValueType"), ("period", 12, i64, opt, ""),
                    ("comment", 13, i64, rep, ""), ("default_sample_type", 14, i64, opt, "")],
        "ValueType": [("type", 1, i64, opt, ""), ("unit", 2, i64, opt, "")],
        "Sample": [("location_id", 1, u64, rep, ""), ("value", 2, i64, rep, ""), ("label", 3, msg, rep, "Label")],
        "Label": [("key", 1, i64, opt, ""), ("str", 2, i64, opt, ""), ("num", 3, i64, opt, ""),
                  ("num_unit", 4, i64, opt, "")],
        "Mapping": [("id", 1, u64, opt, ""), ("memory_start", 2, u64, opt, ""), ("memory_limit", 3, u64, opt, ""),
                    ("file_offset", 4, u64, opt, ""), ("filename", 5, i64, opt, ""), ("build_id", 6, i64, opt, ""),
                    ("has_functions", 7, boolean, opt, ""), ("has_filenames", 8, boolean, opt, ""),
                    ("has_line_numbers", 9, boolean, opt, ""), ("has_inline_frames", 10, boolean, opt, "")],
        "Location": [("id", 1, u64, opt, ""), ("mapping_id", 2, u64, opt, ""), ("address", 3, u64, opt, ""),
                     ("line", 4, msg, rep, "Line"), ("is_folded", 5, boolean, opt, "")],
        "Line": [("function_id", 1, u64, opt, ""), ("line", 2, i64, opt, ""), ("column", 3, i64, opt, "")],
        "Function": [("id", 1, u64, opt, ""), ("name", 2, i64, opt, ""), ("system_name", 3, i64, opt, ""),
                     ("filename", 4, i64, opt, ""), ("start_line", 5, i64, opt, "")],
    }
    fdp = descriptor_pb2.FileDescriptorProto(name="obskit_test_pprof.proto", package="pprof_test", syntax="proto3")
    for name, fields in spec.items():
        m = fdp.message_type.add(name=name)
        for fname, num, typ, label, type_name in fields:
            f = m.field.add(name=fname, number=num, type=typ, label=label)
            if type_name:
                f.type_name = f".pprof_test.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("pprof_test.Profile"))


def test_pprof_decoded_independently() -> None:
    prof = rich_profile()
    data = encode_pprof(prof)
    assert data[:2] == b"\x1f\x8b"
    msg = _pprof_class().FromString(gzip.decompress(data))
    st = list(msg.string_table)
    assert st[0] == ""
    assert [(st[v.type], st[v.unit]) for v in msg.sample_type] == [("samples", "count"), ("cpu", "nanoseconds")]
    assert (st[msg.period_type.type], st[msg.period_type.unit]) == ("cpu", "nanoseconds")
    period = round(1e9 / 97.5)  # the effective rate wins over the requested one
    assert msg.period == period
    assert msg.duration_nanos == 5_000_000_000 and msg.time_nanos == 1_790_000_000 * 10**9
    funcs = {f.id: f for f in msg.function}
    locs = {loc.id: loc for loc in msg.location}
    assert len(funcs) == len(msg.function) and len(locs) == len(msg.location)  # ids unique
    assert len({(st[f.system_name], st[f.filename]) for f in msg.function}) == len(msg.function)  # deduplicated
    assert len({(loc.line[0].function_id, loc.line[0].line) for loc in msg.location}) == len(msg.location)
    assert sum(s.value[0] for s in msg.sample) == prof.total_samples
    seen = {}
    for s in msg.sample:
        assert s.value[1] == s.value[0] * period
        labels = {st[lb.key]: st[lb.str] for lb in s.label}
        leaf = funcs[locs[s.location_id[0]].line[0].function_id]  # pprof: leaf first
        root = funcs[locs[s.location_id[-1]].line[0].function_id]
        assert st[root.name] == "main"
        seen[st[leaf.system_name]] = (labels, s.value[0], st[leaf.filename], locs[s.location_id[0]].line[0].line)
    assert seen["compute_checksum"] == ({"pid": "101", "tid": "2", "thread_name": "MainThread"}, 250,
                                        "/srv/app/hot.py", 12)
    assert seen[HOSTILE_FUNC][0]["thread_name"] == HOSTILE_THREAD
    assert seen[HOSTILE_FUNC][2] == HOSTILE_FILE


def test_pprof_round_trip_through_loader(tmp_path: Path) -> None:
    prof = rich_profile()
    path = tmp_path / "p.pb.gz"
    write_profile(prof, str(path))
    back = load_profile(str(path))
    assert back.total_samples == prof.total_samples
    assert back.metadata.requested_rate == pytest.approx(97.5, rel=1e-3)
    assert [(f.name, f.file, f.line, f.self_count) for f in back.top_functions(None)] == \
        [(f.name, f.file, f.line, f.self_count) for f in prof.top_functions(None)]
    assert back.thread_name(101, 3) == HOSTILE_THREAD


def _go_pprof_top(path: Path) -> list[str]:
    go = require_tool("go")
    r = subprocess.run([go, "tool", "pprof", "-top", str(path)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "HOME": str(path.parent), "PPROF_TMPDIR": str(path.parent)})
    assert r.returncode == 0, r.stderr
    rows = [ln.split() for ln in r.stdout.splitlines() if re.match(r"\s*[\d.]+\w*s\s+[\d.]+%", ln)]
    return [" ".join(row[5:]) for row in rows]


def test_go_tool_pprof_reads_it(tmp_path: Path) -> None:
    prof = make_profile({("<module>", "main", "hot"): 70, ("<module>", "main", "cold"): 20, ("<module>",): 10})
    path = tmp_path / "p.pb.gz"
    write_profile(prof, str(path))
    names = _go_pprof_top(path)
    assert names[0] == "hot"
    # pprof strips <...> as C++ template arguments: obskit qualifies such names so they stay visible.
    assert "app.<module>" in names and "cold" in names
    # And obskit's decoder reads what pprof itself writes (re-encoded by Go's profile package).
    again = tmp_path / "again.pb.gz"
    with again.open("wb") as fh:
        subprocess.run([shutil.which("go") or "go", "tool", "pprof", "-proto", str(path)], stdout=fh, check=True,
                       stderr=subprocess.DEVNULL, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    back = load_profile(str(again))
    assert [(f.name, f.self_count) for f in back.top_functions(3)] == [("hot", 70), ("cold", 20), ("<module>", 10)]
    assert back.thread_name(100, 1) == "thread 1" and back.metadata.requested_rate == pytest.approx(100)


# -- HTML ----------------------------------------------------------------------------

def _data(page: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="obskit-data">(.*?)</script>', page, re.S)
    assert m, "no embedded data"
    return dict(json.loads(m.group(1)))


def _outside_data(page: str) -> str:
    return re.sub(r'(<script type="application/json" id="obskit-data">).*?(</script>)', r"\1\2", page, flags=re.S)


def test_html_escapes_hostile_names() -> None:
    page = render_html(rich_profile()).decode()
    # Exactly the data element and the code element; nothing from the data became markup.
    assert page.count("<script") == 2 and page.count("</script>") == 2
    for bad in ("alert(1)</script>", "<img", "<b>", "\u2028", "\u2029", "gunicorn app:wsgi & <x>"):
        assert bad not in _outside_data(page).split("<title>")[1].split("</title>")[1] or bad == "<b>"
        assert bad not in page.split('id="obskit-data">')[1].split("</script>")[0]
    # The title is HTML-escaped, not raw.
    assert "<title>obskit flame graph: gunicorn app:wsgi &amp; &lt;x&gt;</title>" in page
    data = _data(page)
    assert HOSTILE_FUNC in data["strings"] and HOSTILE_FILE in data["strings"]
    assert [t[2] for t in data["threads"]].count(HOSTILE_THREAD) == 1
    assert data["warnings"] == ["sampler fell behind <script>"]
    # Only the inline code with this exact hash may run, and nothing may be fetched.
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp and "default-src 'none'" in csp.group(1) and "'sha256-" in csp.group(1)
    assert not re.search(r"\.(innerHTML|outerHTML)\b|insertAdjacentHTML|document\.write|eval\(", page.split("<script>")[1])


def test_html_is_offline() -> None:
    page = render_html(rich_profile()).decode()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page, re.I)
    assert not re.search(r"https?://", _outside_data(page))
    assert not re.search(r"@import|url\(", page)


def _viewer(page: bytes, tmp_path: Path, actions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    node = require_tool("node")
    path = tmp_path / "page.html"
    path.write_bytes(page)
    r = subprocess.run([node, str(VIEWER), str(path), json.dumps(actions or [])], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


def test_html_viewer_runs_and_filters(tmp_path: Path) -> None:
    out = _viewer(render_html(rich_profile()), tmp_path, [
        {"op": "search", "value": "checksum"},
        {"op": "hover", "text": "compute_checksum"},
        {"op": "process", "value": "100"},
        {"op": "process", "value": ""},
        {"op": "thread", "value": "1"},
        {"op": "search", "value": "/^</"},
        {"op": "click", "text": "main"},
    ])
    assert out["title"] == "Flame graph: gunicorn app:wsgi & <x>"
    meta = " | ".join(out["meta"])
    for part in ("Rate:100 Hz requested, 97.5 Hz effective", "Mode:nonblocking, subprocesses",
                 "Samples:500 attempted, 480 valid, 20 failed (4.0%)", "Target paused:1.2%", "Python:3.11.7"):
        assert part in meta
    assert out["warnings"] == ["sampler fell behind <script>"]
    assert [p[0] for p in out["processes"]] == ["", "101", "100"]
    assert not out["hidden"]["process-box"] and out["hidden"]["colour-box"]
    load, search, hover, proc100, _all, thread, regex, zoom = out["steps"]
    assert load["texts"][:2] == ["all", "main"]
    assert HOSTILE_FUNC in load["texts"]  # drawn verbatim as canvas text, never parsed as markup
    assert search["matched"] == "matched 52.1% (250 samples)"
    assert hover["tooltip"][:4] == ["compute_checksum", "/srv/app/hot.py:12",
                                    "total  250 samples  52.1% of all", "self   250 samples  52.1%"]
    assert "compute_checksum" not in proc100["texts"] and "sleep" in proc100["texts"]
    # thread "1" is the second biggest thread: the one with the hostile name.
    assert out["threads"][2][0] == "1" and HOSTILE_THREAD in out["threads"][2][1]
    assert HOSTILE_FUNC in thread["texts"] and "compute_checksum" not in thread["texts"]
    assert regex["matched"] == "matched 100.0% (100 samples)"
    assert "zoomed on main" in zoom["status"]
    assert load["top"][0] == ["52.1%", "52.1%", "compute_checksum", "/srv/app/hot.py:12"]
    assert ["0.0%", "100.0%", "main", "/srv/app/main.py:5"] in load["top"]
    assert [r[2] for r in proc100["top"]] == ["sleep", "main"]  # the table follows the filter


def test_html_top_table_counts_recursion_once(tmp_path: Path) -> None:
    prof = make_profile({("main", "walk", "walk", "walk", "leaf"): 30, ("main", "walk"): 10, ("main",): 10})
    out = _viewer(render_html(prof), tmp_path, [{"op": "toprow", "value": 2}])  # leaf, main, walk
    top = {r[2]: r[:2] for r in out["steps"][0]["top"]}
    assert top == {"leaf": ["60.0%", "60.0%"], "walk": ["20.0%", "80.0%"], "main": ["20.0%", "100.0%"]}
    assert out["steps"][1]["matched"] == "matched 80.0% (40 samples)"  # clicking a row searches for it


def test_html_prunes_small_frames_and_reports_share(tmp_path: Path) -> None:
    stacks: dict[tuple[str, ...], int] = {("main", "big"): 100_000}
    stacks.update({("main", f"tiny_{i}"): 3 for i in range(1000)})
    prof = make_profile(stacks)
    page = render_html(prof, min_share=0.001)
    data = _data(page.decode())
    assert data["minCount"] == 103 and data["pruned"] == 3000
    names = {data["strings"][data["funcs"][3 * run[i]]] for run in data["roots"] for i in range(4, len(run), 4)}
    # The 1000 tiny frames are one [other] frame beside "big": the level keeps its shape.
    assert names == {"main", "big", "[other]"}
    main_run = data["roots"][0]
    kids = {data["strings"][data["funcs"][3 * main_run[i]]]: main_run[i + 2] for i in range(8, len(main_run), 4)}
    assert kids == {"big": 100_000, "[other]": 3000}
    assert any("2.9% of samples end in an [other] frame (frames under 103 samples" in w for w in data["warnings"])
    out = _viewer(page, tmp_path, [{"op": "hover", "text": "[ot\u2026"}])  # 35 px wide: the label is cut
    assert "pruned 2.9% of samples (subtrees under 103 samples, merged into [other])" in out["steps"][0]["status"]
    assert "frames under 103 samples each, merged (too many to draw)" in out["steps"][1]["tooltip"]
    # Without pruning, everything is kept.
    assert _data(render_html(prof, min_share=0).decode())["pruned"] == 0


def test_html_node_budget_bounds_size() -> None:
    stacks: dict[tuple[str, ...], int] = {("main", f"f{i}", f"g{i}"): 1 for i in range(3000)}
    data = _data(render_html(make_profile(stacks), min_share=0, max_nodes=500).decode())
    kept = sum(len(r) // 4 - 1 for r in data["roots"])
    assert kept <= 500 and data["pruned"] == 3000 and data["minCount"] > 1


# -- diff ----------------------------------------------------------------------------

def _diff_pair() -> tuple[Profile, Profile]:
    base = make_profile({("main", "parse"): 60, ("main", "render"): 20, ("main", "legacy"): 20})
    # Ten times the samples: shares, not counts, must be compared.
    new = make_profile({("main", "parse"): 300, ("main", "render"): 500, ("main", "cache"): 200}, pid=200)
    return base, new


def test_diff_profiles_normalised() -> None:
    base, new = _diff_pair()
    d = diff_profiles(base, new)
    by = {f.name: f for f in d.functions}
    assert (d.base_samples, d.new_samples) == (100, 1000)
    assert by["render"].delta == pytest.approx(0.3) and by["render"].status == "grown"
    assert by["parse"].delta == pytest.approx(-0.3) and by["parse"].status == "shrunk"
    assert by["cache"].status == "new" and by["cache"].new_self_share == pytest.approx(0.2)
    assert by["legacy"].status == "vanished" and by["legacy"].base_self_share == pytest.approx(0.2)
    assert by["main"].status == "same" and by["main"].total_delta == pytest.approx(0)
    assert [f.name for f in d.grown(2)] == ["render", "cache"]
    assert [f.name for f in d.shrunk(2)] == ["parse", "legacy"]
    assert abs(d.functions[0].delta) >= abs(d.functions[-1].delta)
    from obskit.output import to_jsonable

    assert to_jsonable(d)["schema"] == "obskit.profile-diff/1"


def test_diff_html(tmp_path: Path) -> None:
    base, new = _diff_pair()
    page = render_diff_html(base, new)
    data = _data(page.decode())
    assert data["mode"] == "diff" and (data["baseTotal"], data["total"]) == (100, 1000)
    assert [r[0] for r in data["vanished"]] == ["legacy"]
    out = _viewer(page, tmp_path, [{"op": "hover", "text": "render"}, {"op": "colour", "value": "total"}])
    load, hover, total = out["steps"]
    colour = dict(zip(load["texts"], load["colours"]))
    red, blue = colour["render"], colour["parse"]
    r, _, b = (int(x) for x in red[4:-1].split(","))
    assert r > 200 and b < 100  # grown: red
    r, _, b = (int(x) for x in blue[4:-1].split(","))
    assert b > 200 and r < 100  # shrunk: blue
    assert colour["main"] == "rgb(235,235,235)"  # no self change
    assert "legacy" not in load["texts"]  # shaped by the new profile
    assert "self   base 20.0% \u2192 new 50.0%  (+30.00 pp)" in hover["tooltip"]
    assert "shrank" in out["legend"] and "grew" in out["legend"] and "normalised" in out["legend"]
    assert not out["hidden"]["changes"] and "Vanished (in base, not in new)" in out["changes"]
    assert out["hidden"]["process-box"] and not out["hidden"]["colour-box"]
    assert dict(zip(total["texts"], total["colours"]))["main"] == "rgb(235,235,235)"


# -- loading and writing -------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["json", "speedscope", "collapsed", "pprof"])
def test_load_autodetects_by_content(tmp_path: Path, fmt: str) -> None:
    prof = rich_profile()
    path = tmp_path / "profile.data"  # a name that says nothing
    path.write_bytes(render(prof, fmt))
    back = load_profile(str(path))
    assert back.total_samples == prof.total_samples
    assert back.top_functions(1)[0].name == "compute_checksum"
    assert back.metadata.source_format == fmt


def test_load_tolerates_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.speedscope.json"
    path.write_bytes(b"\xef\xbb\xbf" + render(rich_profile(), "speedscope"))
    assert load_profile(str(path)).total_samples == 480


def test_load_pyspy_raw() -> None:
    prof = load_profile(str(DATA / "pyspy-raw.txt"))
    assert prof.total_samples == 102 and prof.top_functions(1)[0].name == "hot"
    assert prof.thread_name(0, 10348) == "worker-1"


@pytest.mark.parametrize(("content", "words"), [
    (b"", "is empty"),
    (bytes(range(256)) * 4, "pprof"),
    (b"\x1f\x8b\x08\x00garbage", "gzip"),
    (gzip.compress(encode_pprof(rich_profile(), compress=False)[:-7]), "not a readable pprof profile"),
    (b'{"schema": "obskit.profile/1", "frames": [', "invalid JSON"),
    (b'{"schema": "obskit.profile/9"}', "newer"),
    (b'{"hello": 1}', "neither"),
    (b'{"shared": {"frames": 3}, "profiles": []}', "speedscope"),
    (b"just some words\nmore words\n", "not a profile"),
    (b"a;b;c 10\na;b notanumber\n", "line 2"),
])
def test_garbage_is_one_line_input_error(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(InputError) as e:
        load_profile(str(path))
    line = e.value.one_line()
    assert words in line and "\n" not in line and e.value.exit_code == ExitCode.INPUT


def test_missing_and_directory_are_input_errors(tmp_path: Path) -> None:
    for path, words in ((tmp_path / "nope.json", "no such file"), (tmp_path, "is a directory")):
        with pytest.raises(InputError, match=words):
            load_profile(str(path))
    with pytest.raises(InputError, match="does not exist"):
        write_profile(rich_profile(), str(tmp_path / "no" / "such" / "p.json"))


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "p.html"
    path.write_text("previous")

    def interrupted(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(formats.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_profile(rich_profile(), str(path))
    assert path.read_text() == "previous"
    assert os.listdir(tmp_path) == ["p.html"]  # no temporary file left behind
    monkeypatch.undo()
    write_profile(rich_profile(), str(path))
    assert path.read_text().startswith("<!DOCTYPE html>") and os.listdir(tmp_path) == ["p.html"]
    assert (path.stat().st_mode & 0o777) == 0o644 & ~_umask()


def test_write_never_replaces_a_fifo_or_a_symlink(tmp_path: Path) -> None:
    # Renaming over `-o /dev/stdout` (a symlink) or a device would replace the node itself, as root.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    while True:  # until the reader thread has opened its end (a busy machine may take a while)
        try:
            write_profile(rich_profile(), str(fifo), "collapsed")
            break
        except InputError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    reader.join(30)
    assert got and b";" in got[0] and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_profile(rich_profile(), str(link))
    assert link.is_symlink() and json.loads(real.read_text())["schema"] == "obskit.profile/1"


@pytest.mark.parametrize("metadata", [None, {"segments": [None], "warnings": "x", "duration_s": "abc",
                                             "samples_attempted": 1.5, "idle": "yes"}])
def test_malformed_metadata_keeps_defaults(tmp_path: Path, metadata: Any, cli: Callable[..., Any]) -> None:
    data = rich_profile().to_dict()
    data["metadata"] = metadata
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    r = cli("profile", "show", str(path), "--json")
    assert r.exit_code == 0, r.stderr
    meta = json.loads(r.stdout)["metadata"]
    assert meta["segments"] == [] and meta["warnings"] == [] and meta["duration_s"] is None and meta["idle"] is False


def test_negative_sample_count_is_an_input_error(tmp_path: Path) -> None:
    data = rich_profile().to_dict()
    data["samples"][0][3] = -5
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="negative sample count"):
        load_profile(str(path))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- a real recording ----------------------------------------------------------------

HOT_TARGET = """
import threading
import time
def crunch_numbers():
    total = 0
    for i in range(200_000):
        total += i * i
    return total
def spin():
    while True:
        crunch_numbers()
threading.Thread(target=spin, name="cruncher", daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""


@pytest.mark.slow
@pytest.mark.ptrace
@needs_ptrace
def test_real_recording_in_every_format(spawn_python: Callable[..., Target], tmp_path: Path) -> None:
    from obskit import pyspy

    target = spawn_python(HOT_TARGET)
    raw = tmp_path / "raw.txt"
    r = subprocess.run([pyspy.binary(), "record", "--pid", str(target.pid), "-d", "2", "-r", "100", "-t", "-f", "raw",
                        "-o", str(raw), "--nonblocking"], capture_output=True, text=True, timeout=120, env=pyspy.env())
    assert r.returncode == 0, r.stderr
    prof = parse_collapsed(raw.read_text().splitlines(), default_pid=target.pid)
    prof.metadata.requested_rate = 100
    assert prof.top_functions(1)[0].name == "crunch_numbers"
    outs = {fmt: tmp_path / f"p.{ext}" for fmt, ext in
            (("html", "html"), ("speedscope", "speedscope.json"), ("collapsed", "collapsed"), ("pprof", "pb.gz"),
             ("trace-event", "trace.json"), ("json", "json"))}
    for path in outs.values():
        write_profile(prof, str(path))
    for fmt in ("speedscope", "collapsed", "pprof", "trace-event", "json"):
        back = load_profile(str(outs[fmt]))
        assert back.total_samples == prof.total_samples, fmt
        assert back.top_functions(1)[0].name == "crunch_numbers", fmt
    _validate_speedscope(json.loads(outs["speedscope"].read_text()))
    _validate_trace(json.loads(outs["trace-event"].read_text()))
    assert _go_pprof_top(outs["pprof"])[0] == "crunch_numbers"
    data = _data(outs["html"].read_text())
    assert "crunch_numbers" in data["strings"] and data["total"] == prof.total_samples
    assert any(t[2] == "cruncher" for t in data["threads"])


def test_help_text_mentions_nothing_heavy() -> None:
    # The format modules are imported by `obskit profile`; they must not pull in rich, psutil or protobuf.
    code = ("import sys, obskit.profile.formats, obskit.profile.html, obskit.profile.pprof, obskit.profile.diff, "
            "obskit.profile.speedscope; print(sorted(m for m in ('rich', 'psutil', 'google.protobuf', "
            "'opentelemetry') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "[]", r.stderr


# -- budgets: hostile inputs cost bounded memory and end in one line, exit 9 -------------

def _bomb() -> bytes:
    import zlib

    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\0" * (1 << 20)
    return b"".join([c.compress(block) for _ in range(1024)] + [c.flush()])  # ~1 MB expanding to 1 GiB


def _deep_json(depth: int) -> bytes:
    return b'{"traceEvents": ' + b"[" * depth + b"]" * depth + b"}"


def _speedscope_with(weights: list[Any]) -> bytes:
    doc = {"$schema": "https://www.speedscope.app/file-format-schema.json", "shared": {"frames": [{"name": "f"}]},
           "profiles": [{"type": "sampled", "name": "t", "unit": "seconds", "startValue": 0, "endValue": 1,
                         "samples": [[0]] * len(weights), "weights": weights}]}
    return json.dumps(doc).encode().replace(b'"INF"', b"1e999").replace(b'"NAN"', b"NaN")


@pytest.mark.parametrize(("name", "content", "words"), [
    ("bomb.pb.gz", _bomb(), "expands to more than 128 MiB"),
    ("deep.json", _deep_json(100_000), "nested deeper"),
    ("deep-list.json", b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
    ("huge-weight.speedscope.json", _speedscope_with([1e308]), "weight"),
    ("inf-weight.speedscope.json", _speedscope_with(["INF"]), "weight"),
    ("nan-weight.speedscope.json", _speedscope_with(["NAN"]), "weight"),
    ("inf-line.json", b'{"schema": "obskit.profile/1", "frames": [["f", "a.py", 1e999]], "samples": []}', "malformed"),
    ("huge-count.collapsed", b"a;b 1" + b"0" * 5000 + b"\n", "line 1"),
    ("long-line.collapsed", b"a;b 1\n" + b"x;" * (9 << 20) + b"y 1\n", "line 2 is longer than 16 Mi characters"),
    ("loop.trace.json", b'{"traceEvents": [], "stackFrames": {"1": {"name": "a", "parent": "2"}, '
                        b'"2": {"name": "b", "parent": "1"}}, "samples": [{"tid": 1, "ts": 0, "name": "c", "sf": "1"}]}',
     "own ancestor"),
    ("inf-trace.trace.json", b'{"traceEvents": [{"name": "f", "ph": "X", "ts": 0, "dur": 1e999, "pid": 1, "tid": 1}]}',
     "out of range"),
])
def test_hostile_inputs_are_bounded_one_line_errors(tmp_path: Path, cli: Callable[..., Any], name: str,
                                                    content: bytes, words: str) -> None:
    import resource

    path = tmp_path / name
    path.write_bytes(content)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for args in (["profile", "show", str(path)], ["profile", "diff", str(path), str(path)]):
        r = cli(*args)
        assert r.exit_code == ExitCode.INPUT, (r.exit_code, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in r.stderr, r.stderr
    # The bomb expands 1 GiB; the budget stops it at 128 MiB (+ the interpreter and the test process).
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 400


# -- values in time units add up to the sampled time -------------------------------------

def _single_thread(samples: int, rate: float, duration: float) -> Profile:
    prof = make_profile({("main", "spin"): samples * 7 // 10, ("main", "other"): samples - samples * 7 // 10},
                        rate=100.0)
    prof.metadata.effective_rate, prof.metadata.duration_s = rate, duration
    return prof


def _go_pprof(path: Path, *args: str) -> str:
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not installed: `go tool pprof` cannot be run")
    r = subprocess.run([go, "tool", "pprof", *args, str(path)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "HOME": str(path.parent), "PPROF_TMPDIR": str(path.parent)})
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize(("samples", "rate", "duration"), [
    (307, 50.0, 6.14),  # 307 samples at 50 Hz are 6.14 s: 100 %
    (326, 50.0, 6.14),  # more samples than 6.14 s holds at that rate (counted twice): scaled to the duration
])
def test_pprof_total_is_the_sampled_time(tmp_path: Path, samples: int, rate: float, duration: float) -> None:
    path = tmp_path / "p.pb.gz"
    write_profile(_single_thread(samples, rate, duration), str(path))
    top = _go_pprof(path, "-top")
    m = re.search(r"Total samples = ([\d.]+)(ms|s) \(\s*([\d.]+)%\)", top)
    assert m, top
    total_s = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    assert total_s == pytest.approx(6.14, abs=0.02) and float(m.group(3)) == pytest.approx(100, abs=0.5)
    raw = _go_pprof(path, "-raw")
    assert re.search(r"Period: (\d+)", raw) and "Duration: 6.14" in raw
    assert "samples/count cpu/nanoseconds" in raw


def test_speedscope_weights_are_seconds(tmp_path: Path) -> None:
    prof = _single_thread(307, 50.0, 6.14)
    doc = to_speedscope(prof)
    _validate_speedscope(doc)
    (only,) = doc["profiles"]
    assert only["unit"] == "seconds" and sum(only["weights"]) == pytest.approx(6.14)
    path = tmp_path / "p.speedscope.json"
    write_profile(prof, str(path))
    back = load_profile(str(path))
    assert back.total_samples == 307 and back.metadata.requested_rate == pytest.approx(50)


# -- output names ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["x.gecko.json", "X.GECKO.JSON", "p.cpuprofile.json", "p.pyinstrument.json"])
def test_foreign_suffix_is_a_usage_error(tmp_path: Path, cli: Callable[..., Any], name: str) -> None:
    with pytest.raises(UsageError, match="obskit does not write"):
        format_for_path(name)
    src = tmp_path / "in.collapsed"
    src.write_text("a;b 3\n")
    r = cli("profile", "show", str(src), "-o", str(tmp_path / name))
    assert r.exit_code == ExitCode.USAGE and "obskit does not write" in r.stderr
    assert not (tmp_path / name).exists()
    # Any other *.json is still obskit's own JSON.
    assert format_for_path("my.profile.json") == "json" and format_for_path("run.trace.json") == "trace-event"


# -- Chrome trace-event format -----------------------------------------------------------

def _validate_trace(doc: Any) -> None:
    import jsonschema

    schema = json.loads((DATA / "trace-event-schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(doc, schema)


def test_trace_event_valid_and_reloads(tmp_path: Path, cli: Callable[..., Any]) -> None:
    prof = rich_profile()
    path = tmp_path / "p.trace.json"
    r = cli("profile", "show", str(_saved(prof, tmp_path)), "-o", str(path))
    assert r.exit_code == 0, r.stderr
    doc = json.loads(path.read_text())
    _validate_trace(doc)
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"}
    assert names[(101, 3)] == HOSTILE_THREAD
    # The flame chart: X events of one thread nest, and each root lasts its samples x the period.
    xs = [e for e in doc["traceEvents"] if e["ph"] == "X" and e["tid"] == 2]
    main = next(e for e in xs if e["name"] == "main")
    assert main["dur"] == pytest.approx(340 / 97.5 * 1e6, rel=1e-6) and main["args"]["file"] == "/srv/app/main.py"
    assert all(main["ts"] <= e["ts"] and e["ts"] + e["dur"] <= main["ts"] + main["dur"] + 1e-3 for e in xs)
    back = load_profile(str(path))
    assert back.metadata.source_format == "trace-event" and back.total_samples == prof.total_samples
    assert [(f.name, f.file, f.line, f.self_count) for f in back.top_functions(None)] == \
        [(f.name, f.file, f.line, f.self_count) for f in prof.top_functions(None)]
    assert back.thread_name(101, 3) == HOSTILE_THREAD
    shown = cli("profile", "show", str(path), "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["top_functions"][0]["name"] == "compute_checksum"


def test_trace_event_schema_rejects_broken_files() -> None:
    import jsonschema

    from obskit.profile.trace_event import to_trace_event

    good = to_trace_event(rich_profile())
    x = next(e for e in good["traceEvents"] if e["ph"] == "X")
    for broken in ({k: v for k, v in good.items() if k != "traceEvents"},
                   {**good, "traceEvents": [{k: v for k, v in x.items() if k != "dur"}]},
                   {**good, "traceEvents": [{**x, "ph": "Z"}]},
                   {**good, "samples": [{"tid": 1, "name": "cpu"}]}):
        with pytest.raises(jsonschema.ValidationError):
            _validate_trace(broken)


def test_reads_other_tools_trace_events(tmp_path: Path) -> None:
    # Complete and begin/end events, as a tracer writes them (microseconds): self time per stack.
    events = [
        {"name": "thread_name", "ph": "M", "pid": 7, "tid": 8, "args": {"name": "worker"}},
        {"name": "main", "ph": "X", "ts": 0, "dur": 100_000, "pid": 7, "tid": 8},
        {"name": "parse", "ph": "X", "ts": 10_000, "dur": 30_000, "pid": 7, "tid": 8},
        {"name": "io", "ph": "B", "ts": 50_000, "pid": 7, "tid": 8},
        {"name": "io", "ph": "E", "ts": 90_000, "pid": 7, "tid": 8},
    ]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(events))
    back = load_profile(str(path))
    assert {(f.name, f.self_count) for f in back.top_functions(None)} == {("io", 40), ("parse", 30), ("main", 30)}
    assert back.thread_name(7, 8) == "worker"


def _saved(prof: Profile, tmp_path: Path) -> Path:
    path = tmp_path / "src.json"
    write_profile(prof, str(path))
    return path


# -- terminal tables at 80 and 120 columns ------------------------------------------------

_LONG = ["obskit_hot_path_handler_for_orders", "obskit_hot_path_handler_for_invoices",
         "obskit_hot_path_serializer_of_orders"]


def _folded(tmp_path: Path, name: str, counts: list[int]) -> Path:
    path = tmp_path / name
    path.write_text("".join(
        f"main (/srv/app/main.py:1);{fn} (/usr/lib/python3.11/site-packages/shop/{fn.rsplit('_', 1)[-1]}/views.py:{i})"
        f" {c}\n" for i, (fn, c) in enumerate(zip(_LONG, counts))))
    return path


@pytest.mark.parametrize("width", [80, 120])
def test_tables_keep_function_names_whole(tmp_path: Path, width: int) -> None:
    a, b = _folded(tmp_path, "a.collapsed", [50, 30, 20]), _folded(tmp_path, "b.collapsed", [10, 60, 30])
    env = {**os.environ, "OBSKIT_WIDTH": str(width), "NO_COLOR": "1"}
    for args in (["diff", str(a), str(b)], ["show", str(a)]):
        r = subprocess.run([sys.executable, "-m", "obskit", "profile", *args], capture_output=True, text=True,
                           env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert max(len(ln.rstrip()) for ln in lines) <= width
        for fn in _LONG:  # each row says which function it is, on one line
            assert sum(fn in ln for ln in lines) == 1, (fn, r.stdout)
        assert "…" not in "".join(ln.split("…/")[0] for ln in lines)  # only paths are shortened
        assert "views.py:1" in r.stdout
        if width >= 120:
            assert "/shop/invoices/views.py:1" in r.stdout


def test_pruned_pages_warn_on_the_terminal(tmp_path: Path, cli: Callable[..., Any]) -> None:
    src = tmp_path / "flat.collapsed"
    src.write_text("".join(f"main (app.py:1);f{i} (app.py:{i}) 1\n" for i in range(20_000)))
    r = cli("profile", "show", str(src), "-o", str(tmp_path / "p.html"), "--json")
    assert r.exit_code == 0, r.stderr
    (out,) = json.loads(r.stdout)["outputs"]
    assert any("100.0% of samples end in an [other] frame" in n for n in out["notes"])
    r = cli("profile", "diff", str(src), str(src), "-o", str(tmp_path / "d.html"))
    assert r.exit_code == 0 and "note:" in r.stdout and "the differential flame graph: 100.0%" in r.stdout
    # A profile whose frames are all drawn says nothing.
    small = tmp_path / "small.collapsed"
    small.write_text("main;a 5\nmain;b 5\n")
    r = cli("profile", "show", str(small), "-o", str(tmp_path / "s.html"))
    assert r.exit_code == 0 and "note:" not in r.stdout


def test_trace_event_flame_chart_skips_subpixel_nodes_but_keeps_every_stack(tmp_path: Path) -> None:
    from obskit.profile.trace_event import to_trace_event

    stacks: dict[tuple[str, ...], int] = {("main", "big"): 100_000}
    stacks.update({("main", f"tiny_{i}"): 1 for i in range(50)})
    prof = make_profile(stacks)
    doc = to_trace_event(prof)
    xs = {e["name"] for e in doc["traceEvents"] if e["ph"] == "X"}
    assert xs == {"main", "big"}
    path = tmp_path / "p.trace.json"
    write_profile(prof, str(path))
    back = load_profile(str(path))
    assert back.total_samples == 100_050 and len({f.name for f in back.frames if f.name.startswith("tiny_")}) == 50
