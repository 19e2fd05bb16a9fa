"""`obskit snapshot` against real processes: a gunicorn master with workers, log files held open,
a FIFO that must not be read, secrets that must not reach the archive, SIGTERM mid-profile, a
non-root target read without CAP_SYS_PTRACE, a real memory cgroup for the headroom plan."""

from __future__ import annotations

import ast
import html
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Target, needs_ptrace, needs_root, obskit_process, run_obskit, terminate

SECRET = "s3cr3t-Value-9f8e7d"
PASSWORD = "hunter2-Pa55-zq"

APP = """
import threading

def burn_cpu_hot():
    x = 0
    while True:
        for i in range(10000):
            x += i * i

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]

def post_fork(server, worker):
    threading.Thread(target=burn_cpu_hot, daemon=True).start()
"""


def _members(path: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with tarfile.open(path, "r:gz") as tar:
        names = tar.getnames()
        assert names[1].endswith("/index.json"), names[:3]  # first: `show` reads it without scanning
        for m in tar:
            assert not m.issym() and not m.islnk() and not m.name.startswith("/") and ".." not in m.name
            if m.isfile():
                fh = tar.extractfile(m)
                assert fh is not None
                out[m.name.split("/", 1)[1]] = fh.read()
    return out


def _section(index: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in index["sections"] if s["name"] == name)


def _wait_workers(pid: int, n: int, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            kids = []
        if len(kids) >= n:
            time.sleep(0.5)  # post_fork ran
            return [int(k) for k in kids]
        time.sleep(0.1)
    raise AssertionError("gunicorn workers did not start")


@pytest.fixture
def gunicorn_target(tmp_path: Path) -> Any:
    (tmp_path / "snapapp.py").write_text(APP)
    log = tmp_path / "app.log"
    log.write_text("".join(f"line {i} user=alice token={SECRET}\n" for i in range(2000)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "3", "-b", "127.0.0.1:0", "-c", str(tmp_path / "snapapp.py"),
         "--chdir", str(tmp_path), "--error-logfile", str(log), "-e", f"DB_PASSWORD={PASSWORD}",
         "-e", f"DATABASE_URL=postgres://app:{PASSWORD}@db.internal/app", "snapapp:app"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        env={**os.environ, "API_TOKEN": SECRET}, cwd=tmp_path, text=True)
    try:
        workers = _wait_workers(proc.pid, 3)
        yield proc, workers, log
    finally:
        terminate(proc)


@needs_ptrace
@pytest.mark.slow
def test_snapshot_of_a_gunicorn_service(gunicorn_target: Any, tmp_path: Path) -> None:
    proc, workers, log = gunicorn_target
    out = tmp_path / "incident.tar.gz"
    r = run_obskit("snapshot", "--pid", str(proc.pid), "-d", "3", "-o", str(out), "--logs", str(log), timeout=180)
    assert r.exit_code == 0, r.stderr
    files = _members(out)
    index = json.loads(files["index.json"])
    assert index["schema"] == "obskit.snapshot/1"
    assert index["targets"][0]["pid"] == proc.pid and sorted(index["targets"][0]["workers"]) == sorted(workers)
    assert index["verdicts"][0]["kind"] == "hot" and "burn_cpu_hot" in index["verdicts"][0]["title"]
    assert any(v["kind"] == "workers" and "3 workers" in v["title"] for v in index["verdicts"])
    for name in ("doctor", "ps", "env", "logs", "mem", "quota", "stacks", "profile", "mem-trend"):
        assert _section(index, name)["status"] == "ok", _section(index, name)
    gc = _section(index, "gc")
    assert gc["status"] == "skipped" and "obskit run" in gc["fix"]

    # Every JSON section is the command's own document.
    schemas = {json.loads(files[n])["schema"] for n in files if n.endswith(".json")}
    assert {"obskit.doctor/1", "obskit.ps/1", "obskit.stacks/1", "obskit.quota/1", "obskit.mem/1",
            "obskit.profile/1", "obskit.profile.report/1", "obskit.snapshot.env/1"} <= schemas
    stacks = json.loads(files["stacks.json"])
    assert stacks["watch"]["dumps"] == 2 and {p["pid"] for p in stacks["processes"]} >= set(workers)

    # `obskit profile show` reads the profile; jq reads the sections.
    (tmp_path / "profile.json").write_bytes(files["profile.json"])
    shown = run_obskit("profile", "show", str(tmp_path / "profile.json"), "--json")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["top_functions"][0]["name"] == "burn_cpu_hot"
    if shutil.which("jq"):
        (tmp_path / "ps.json").write_bytes(files["ps.json"])
        jq = subprocess.run(["jq", "-r", '[.processes[] | select(.role=="gunicorn-worker")] | length',
                             str(tmp_path / "ps.json")], capture_output=True, text=True, check=True)
        assert jq.stdout.strip() == "3"

    # The log the service holds open, its tail only (2000 lines written, 500 kept), redacted.
    logs = json.loads(files["logs.json"])
    src = [s for s in logs["sources"] if s["path"] == str(log)]
    assert len(src) == 1 and src[0]["truncated"] and src[0]["lines"] == 500
    assert b"line 1999 user=alice" in files[src[0]["file"]]
    assert any("kubectl logs" in n for n in logs["notes"])

    # No secret reaches the archive, in any file.
    blob = b"".join(files.values())
    assert SECRET.encode() not in blob and PASSWORD.encode() not in blob
    env = json.loads(files["env.json"])
    master = next(p for p in env["processes"] if p["pid"] == proc.pid)
    assert master["environ"]["API_TOKEN"] != SECRET and "PATH" in master["environ"]
    assert any(a.startswith("DB_PASSWORD=") for a in master["argv"])

    # The page: offline, CSP-locked, no script, links to the sections.
    page = files["index.html"].decode()
    assert "default-src 'none'; style-src 'sha256-" in html.unescape(page) and "<script" not in page
    assert 'href="stacks.json"' in page and 'href="profile.html"' in page
    assert page.index("Verdicts") < page.index("Sections")

    # `snapshot show` prints the verdicts.
    r = run_obskit("snapshot", "show", str(out))
    assert r.exit_code == 0 and "burn_cpu_hot" in r.stdout and "Sections" in r.stdout
    r = run_obskit("snapshot", "show", str(out), "--json")
    assert json.loads(r.stdout)["schema"] == "obskit.snapshot/1"


HOSTILE = r"""
import os, sys, time
d = sys.argv[1]
fifo = os.path.join(d, "events.log")
os.mkfifo(fifo)
held = os.open(fifo, os.O_RDWR)  # a FIFO named like a log, held open for writing
log = open(os.path.join(d, "real.log"), "a")
log.write("hello <script>alert(1)</script>\n")
log.flush()
print("ready", flush=True)
time.sleep(120)
"""


def test_snapshot_never_reads_a_fifo_and_escapes_target_strings(spawn_python: Callable[..., Target],
                                                                 tmp_path: Path) -> None:
    evil = "<script>alert('argv')</script>\x1b[31m"
    t = spawn_python(HOSTILE, str(tmp_path), evil)
    out = tmp_path / "a.tar.gz"
    r = run_obskit("snapshot", "--pid", str(t.pid), "-d", "1", "-o", str(out), "--logs", str(tmp_path / "*.log"),
                   timeout=120)
    assert r.exit_code == 0, r.stderr
    files = _members(out)
    logs = json.loads(files["logs.json"])
    paths = [s["path"] for s in logs["sources"]]
    assert str(tmp_path / "real.log") in paths and not any(p.endswith("events.log") for p in paths)
    assert any("events.log" in n and "not a regular file" in n for n in logs["notes"])
    page = files["index.html"].decode()
    assert "<script" not in page and "&lt;script&gt;" in page and "\x1b" not in page
    # The FIFO still has nothing consumed from it: write, then read it back from here.
    fd = os.open(tmp_path / "events.log", os.O_RDWR | os.O_NONBLOCK)
    try:
        os.write(fd, b"x\n")
        assert os.read(fd, 10) == b"x\n"
    finally:
        os.close(fd)


@needs_ptrace
def test_sigterm_mid_profile_writes_what_was_collected(spawn_python: Callable[..., Target], tmp_path: Path) -> None:
    t = spawn_python("import time\nprint('ready', flush=True)\nwhile True: sum(range(10000))")
    out = tmp_path / "cut.tar.gz"
    with obskit_process("snapshot", "--pid", str(t.pid), "-d", "60", "-o", str(out)) as p:
        assert p.stderr is not None
        for line in p.stderr:
            if "CPU profile" in line:
                break
        time.sleep(2)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    files = _members(out)
    index = json.loads(files["index.json"])
    assert index["interrupted"] is True
    assert _section(index, "profile")["status"] == "interrupted" and "profile.json" in files
    assert _section(index, "mem-trend")["status"] == "not-run"
    assert _section(index, "ps")["status"] == "ok"


def _nobody_target() -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
         "import time\nprint('ready', flush=True)\nwhile True: sum(range(10000))"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_non_root_target_without_ptrace_gives_a_thin_archive_that_says_so(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    target = _nobody_target()
    try:
        assert target.stdout is not None and target.stdout.readline().strip() == "ready"
        out = tmp_path / "thin.tar.gz"
        proc = subprocess.run(
            ["setpriv", "--inh-caps=-sys_ptrace", "--bounding-set=-sys_ptrace", sys.executable, "-m", "obskit",
             "snapshot", "--pid", str(target.pid), "-d", "1", "-o", str(out)],
            capture_output=True, text=True, timeout=120, env={**os.environ, "OBSKIT_WIDTH": "120"})
        assert proc.returncode == 0, proc.stderr
        files = _members(out)
        index = json.loads(files["index.json"])
        assert index["accounting"]["ptrace"] is False
        thin = index["accounting"]["thin"]
        # /proc/PID/root always needs ptrace-read permission; environ, fd and smaps do too on most kernels
        # (the container test checks them): here only what this kernel refuses is named.
        assert thin and "uid 65534" in thin and f"/proc/{target.pid}/root" in thin and "--profile=general" in thin
        for name in ("stacks", "profile"):
            assert _section(index, name)["status"] == "skipped" and "--profile=general" in _section(index, name)["fix"]
        for name in ("env", "mem"):
            sec = _section(index, name)
            assert sec["status"] == "ok" or "--profile=general" in sec["fix"] or "environ" in sec["reason"], sec
        assert _section(index, "ps")["status"] == "ok"
        assert b"thin archive" in files["index.html"]
    finally:
        terminate(target)


@needs_root
def test_headroom_plan_from_a_real_memory_cgroup(spawn_python: Callable[..., Target]) -> None:
    from obskit.proc import ProcFS
    from obskit.snapshot.headroom import MIB, assess, need

    base = Path("/sys/fs/cgroup/memory")
    if not (base / "memory.limit_in_bytes").exists():
        pytest.skip("no cgroup v1 memory hierarchy here")
    cg = base / f"obskit-test-snapshot-{uuid.uuid4().hex[:8]}"
    cg.mkdir()
    t = None
    try:
        t = spawn_python("import time\nprint('ready', flush=True)\ntime.sleep(60)")
        (cg / "cgroup.procs").write_text(str(t.pid))
        used = int((cg / "memory.usage_in_bytes").read_text())
        fs = ProcFS()
        (cg / "memory.limit_in_bytes").write_text(str(used + int(need(10) * 1.3)))
        assert assess(fs, t.pid, 10).plan == "full"
        (cg / "memory.limit_in_bytes").write_text(str(used + int(need(1) * 1.3)))
        h = assess(fs, t.pid, 10)
        assert h.plan == "shrink" and "one busy worker" in h.reason and h.level == str(cg)
        (cg / "memory.limit_in_bytes").write_text(str(used + 40 * MIB))
        h = assess(fs, t.pid, 10)
        assert h.plan == "minimal" and "no profile" in h.reason
    finally:
        if t is not None:
            t.stop()
        for _ in range(50):
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def test_a_failing_section_is_recorded_and_the_rest_goes_on(tmp_path: Path) -> None:
    from obskit.errors import PermissionDenied
    from obskit.snapshot.archive import build, read_index
    from obskit.snapshot.model import TargetInfo
    from obskit.snapshot.runner import Context, Section, SectionOutput, Skipped, run

    def boom(ctx: Context) -> SectionOutput:
        raise RuntimeError("broken collector")

    def denied(ctx: Context) -> SectionOutput:
        raise PermissionDenied("cannot read it", "run as root")

    def skip(ctx: Context) -> SectionOutput:
        raise Skipped("not here", "do this")

    def good(ctx: Context) -> SectionOutput:
        return SectionOutput({"good.json": {"schema": "x/1", "v": 1}, "raw.txt": b"<b>"})

    ctx = Context([TargetInfo(os.getpid(), "python", "python <x>", os.getuid())], 1.0)
    ctx.deadline = time.monotonic() + 60
    res = run(ctx, [Section("a", "A", boom), Section("b", "B", denied), Section("c", "C", skip),
                    Section("d", "D", good)])
    st = {s.name: (s.status, s.reason, s.fix) for s in res.index.sections}
    assert st["a"][0] == "failed" and "broken collector" in st["a"][1] and "report" in st["a"][2]
    assert st["b"] == ("failed", "cannot read it", "run as root")
    assert st["c"] == ("skipped", "not here", "do this")
    assert st["d"][0] == "ok"
    out = tmp_path / "x.tar.gz"
    out.write_bytes(build(res))
    index, names = read_index(str(out))
    assert index["files"]["good.json"] == "x/1" and any(n.endswith("/raw.txt") for n in names)
    assert "a: RuntimeError: broken collector" in index["accounting"]["skipped"]


def test_show_rejects_what_is_not_an_archive(tmp_path: Path) -> None:
    bad = tmp_path / "x.tar.gz"
    bad.write_bytes(b"not a tar")
    r = run_obskit("snapshot", "show", str(bad))
    assert r.exit_code == 9 and "not a snapshot archive" in r.stderr
    r = run_obskit("snapshot", "show", str(tmp_path / "missing.tar.gz"))
    assert r.exit_code == 9


def test_no_archive_when_the_pid_does_not_exist(tmp_path: Path) -> None:
    r = run_obskit("snapshot", "--pid", "999999999", "-o", str(tmp_path / "x.tar.gz"))
    assert r.exit_code == 4 and not (tmp_path / "x.tar.gz").exists()
    r = run_obskit("snapshot", "--pid", "1", "-o", str(tmp_path / "nodir" / "x.tar.gz"))
    assert r.exit_code == 9
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        r = run_obskit("snapshot", "--pid", str(sleeper.pid), "-o", str(tmp_path / "x.tar.gz"))
        assert r.exit_code == 5 and "runs no Python" in r.stderr and not (tmp_path / "x.tar.gz").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


FEATURES = {"profile", "stacks", "quota", "mem", "logs", "otel", "agent"}


def test_the_snapshot_engine_imports_no_feature_package() -> None:
    """The aggregator's engine gets its collectors from commands/snapshot.py."""
    for path in (ROOT / "obskit" / "snapshot").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for n in names:
                parts = n.split(".")
                assert not (parts[0] == "obskit" and len(parts) > 1 and parts[1] in FEATURES | {"commands"}), \
                    f"{path.name} imports {n}"


def test_gc_section_with_an_agent_in_the_target(spawn_python: Callable[..., Target], tmp_path: Path) -> None:
    t = spawn_python("import gc, time\nimport obskit.agent\nobskit.agent.start()\nprint('ready', flush=True)\n"
                     "while True:\n    [[] for _ in range(1000)]; gc.collect(0); time.sleep(0.05)")
    out = tmp_path / "gc.tar.gz"
    r = run_obskit("snapshot", "--pid", str(t.pid), "-d", "1", "-o", str(out), timeout=120)
    assert r.exit_code == 0, r.stderr
    files = _members(out)
    index = json.loads(files["index.json"])
    assert _section(index, "gc")["status"] == "ok", _section(index, "gc")
    gc = json.loads(files[f"gc-{t.pid}.json"])
    assert gc["schema"] == "obskit.gc/1" and gc["pid"] == t.pid
    assert json.loads(files["mem.json"])["python"]["tracked_objects"] > 0
