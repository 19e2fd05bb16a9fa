"""`obskit quota` on captured cgroup trees (tests/data/quota/, see its README) and the parsers under it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import CAPTURED

from obskit import cgroups
from obskit.cgroups import Roots
from obskit.quota import confparse
from obskit.quota.budgets import rounding
from obskit.quota.collect import collect
from obskit.quota.services import shape

DATA = CAPTURED / "quota"


def tree(name: str) -> Roots:
    return Roots(proc=str(DATA / name / "proc"), fs=str(DATA / name / "root"))


# -- parsers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max 100000", (None, 100000)),
        ("50000 100000", (50000, 100000)),
        ("150000", (150000, 100000)),  # one field: period defaults
        ("max", (None, 100000)),
        ("50000 0", None),  # period 0 is refused
        ("", None),
        ("a b c", None),
        ("x 100000", None),
    ],
)
def test_cpu_max(text: str, expected: tuple[int | None, int] | None) -> None:
    assert cgroups.parse_cpu_max(text) == expected


def test_cpu_list_and_memory_sentinel() -> None:
    assert cgroups.parse_cpu_list("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert cgroups.parse_cpu_list("") == []
    assert cgroups.memory_bytes(9223372036854771712) is None  # v1 "unlimited"
    assert cgroups.memory_bytes(None) is None
    assert cgroups.memory_bytes(512 << 20) == 512 << 20


def test_mountinfo_escapes_and_super_options() -> None:
    text = ("41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n"
            "32 31 0:29 /docker/abc /sys/fs/cgroup/cpu\\040x rw - cgroup cgroup rw,cpu,cpuacct\n"
            "garbage line\n")
    mounts = cgroups.parse_mountinfo(text)
    assert [m.mountpoint for m in mounts] == ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/cpu x"]
    assert mounts[1].root == "/docker/abc"
    assert {"cpu", "cpuacct"} <= set(mounts[1].superopts)


def test_cgroup_file_keeps_colons_in_paths() -> None:
    entries = cgroups.parse_cgroup_file("4:memory:/a:b/c\n0::/x\n")
    assert entries == [("4", ["memory"], "/a:b/c"), ("0", [], "/x")]


def test_v1_docker_mount_root_maps_to_mount_point(tmp_path: Path) -> None:
    (tmp_path / "sys/fs/cgroup/memory").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/memory/memory.limit_in_bytes").write_text("268435456\n")
    found = cgroups.locate("4:memory:/docker/abc\n",
                           "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n",
                           Roots(fs=str(tmp_path)), ("memory",))
    h = found["memory"]
    assert h.leaf == str(tmp_path / "sys/fs/cgroup/memory")
    assert h.levels == [h.leaf]  # the parents are outside the container's mount


def test_path_outside_the_mount_root_is_not_visible(tmp_path: Path) -> None:
    # A debug container reading its target: `0::/../<target scope>` is above its own cgroupns root.
    (tmp_path / "sys/fs/cgroup").mkdir(parents=True)
    found = cgroups.locate("0::/../cri-containerd-target.scope\n",
                           "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", Roots(fs=str(tmp_path)))
    assert "unified" not in found


@pytest.mark.parametrize(
    ("limit", "affinity", "automaxprocs", "go125", "nproc"),
    [(0.25, 64, 1, 2, 1), (0.5, 64, 1, 2, 1), (1.4, 64, 1, 2, 1), (1.5, 64, 1, 2, 2), (1.999, 64, 1, 2, 2),
     (8.5, 64, 8, 9, 9), (8.5, 4, 8, 4, 9), (0.4, 1, 1, 1, 1)],
)
def test_rounding_schools(limit: float, affinity: int, automaxprocs: int, go125: int, nproc: int) -> None:
    r = rounding(limit, affinity)
    assert (r["automaxprocs"], r["go125"], r["nproc"]) == (automaxprocs, go125, nproc)
    assert r["floor"] == math.floor(limit) and r["ceil"] == math.ceil(limit)


def test_gunicorn_config_is_evaluated_not_executed() -> None:
    text = ("import multiprocessing, os\ncores = multiprocessing.cpu_count()\nworkers = cores * 2 + 1\n"
            "threads = int(os.environ.get('THREADS', 4))\npreload_app = True\nboom = open('/etc/passwd').read()\n"
            "max_requests = max(100, 10 * 50)\n")
    cfg = confparse.gunicorn_config(text, 64, {"THREADS": "8"})
    assert cfg.values["workers"] == 129 and "workers" in cfg.used_cpu_count
    assert cfg.values["threads"] == 8 and "threads" not in cfg.used_cpu_count
    assert cfg.values["preload_app"] is True and cfg.values["max_requests"] == 500
    assert "boom" not in cfg.values
    assert confparse.gunicorn_config("workers = (", 4, {}).values == {}


def test_option_parsing_forms() -> None:
    spec = confparse.GUNICORN_OPTS
    assert confparse.parse_options(["-w", "4", "--threads=2", "--preload", "-kgevent"], spec) == {
        "workers": "4", "threads": "2", "preload_app": "true", "worker_class": "gevent"}
    assert confparse.parse_options(["--workers", "3", "--workers", "5"], spec)["workers"] == "5"
    assert confparse.parse_options(["-c", "8"], confparse.CELERY_OPTS) == {"concurrency": "8"}


def test_count_shapes() -> None:
    why = "64 is the host CPU count"
    assert shape(129, 64, why, 64) == f"129 = 2×64+1 where {why}"
    assert shape(64, 64, why, 64) == f"64 = os.cpu_count() where {why}"
    assert shape(32, 64, why, 64) == f"32 = min(32, 64+4) (ThreadPoolExecutor default) where {why}"
    assert shape(7, 64, why, 64) == "7"
    assert shape(4, 64, why, 4) == "4 = the affinity count (os.process_cpu_count())"


# -- whole trees ---------------------------------------------------------------


def test_v1_hybrid_captured_parent_limit_wins() -> None:
    """Real files from this host: leaf without quota under a 0.5-CPU, 256 MiB parent."""
    r = collect(None, 0, tree("v1-hybrid-nested"))
    assert r.cgroup_version == "hybrid"
    assert r.cpu.limit == 0.5 and r.cpu.limiting_level is not None
    assert r.cpu.limiting_level.endswith("cpu/obskit-cap")
    assert [lv.limit for lv in r.cpu.levels] == [None, 0.5, None]  # leaf, parent, root
    assert r.memory.limit == 256 << 20 and r.memory.limiting_level is not None
    assert r.memory.limiting_level.endswith("memory/obskit-cap")
    assert r.memory.oom_group is None  # v1: a single process is killed
    assert r.pids.limit == 100
    assert r.evidence.lifetime is not None and r.evidence.lifetime.periods > 0  # real throttling captured
    assert r.evidence.psi_scope == "cgroup /"
    assert "oom_kill" in r.evidence.memory_events and "failcnt" in r.evidence.memory_events
    assert r.cpu.rounding["go125"] == 2 and r.cpu.rounding["automaxprocs"] == 1


def test_v2_host_nested_parent_smaller_than_leaf() -> None:
    r = collect(None, 0, tree("v2-host-nested"))
    assert r.cgroup_version == "v2"
    limits = {Path(lv.path).name: lv.limit for lv in r.cpu.levels}
    assert limits["worker"] == 3.0 and limits["app.service"] == 1.5
    assert r.cpu.limit == 1.5 and r.cpu.effective == 1.5 and r.cpu.host_cpus == 8
    assert r.memory.limit == 1 << 30 and r.memory.high == 900 << 20
    assert r.memory.working_set == (300 << 20) - (40 << 20)
    assert r.memory.oom_group is False and r.memory.swap_limit is None
    # Throttling is read where the quota ran out: app.service, not the leaf.
    assert r.evidence.lifetime is not None and r.evidence.lifetime.throttled == 300
    assert r.evidence.lifetime_throttle_ratio == pytest.approx(0.3)
    assert any(f.id == "cpu-throttled-since-start" for f in r.findings)


def test_v2_unlimited_with_escaped_mount_point() -> None:
    r = collect(None, 0, tree("v2-unlimited"))
    assert r.paths and r.paths[0].directory.endswith("cgroup v2/user.slice/session-4.scope")
    assert r.cpu.limit is None and r.cpu.effective == 4
    assert r.memory.limit is None and r.memory.current == 200 << 20
    assert [f.id for f in r.findings] == ["cpu-unlimited"]
    assert r.evidence.psi_scope == "system"  # no cgroup PSI files: /proc/pressure
    assert r.worst == "info"


def test_k8s_container_services_and_verdicts() -> None:
    """Mount root is the container's scope (not "/"); gunicorn from a 2*cpu+1 config, celery defaults, BLAS."""
    r = collect(4101, 0, tree("v2-k8s-container"))
    assert r.cpu.limit == 0.5 and r.cpu.host_cpus == 64 and r.memory.limit == 512 << 20
    assert r.memory.oom_group is True and r.pids.limit == 4096
    assert 4300 not in {p.pid for p in r.processes}  # another container of the pod
    by_kind = {s.kind: s for s in r.services}
    g = by_kind["gunicorn"]
    assert g.workers.value == 129 and g.workers.source == "config"
    assert "129 = 2×64+1 where 64 is the host CPU count" in g.workers.explanation
    assert g.running_workers == 4 and g.preload is False and g.worker_class == "sync"
    assert g.recommended_by_cpu == 3
    # celery's 4 processes already hold ~300 MiB of the 512 MiB: no gunicorn worker fits beside them.
    assert g.recommended_by_memory == 0 and g.recommended_workers == 1
    assert "by memory: floor((512.0 MiB × 0.9 − " in g.recommendation_formula
    assert g.memory is not None and g.memory.worker_uss_median == int((50_000 + 52_000) / 2 * 1024)
    c = by_kind["celery"]
    assert c.workers.value == 64 and c.workers.source == "default"
    assert c.native_threads is not None and c.native_threads.value == 64
    assert c.python_version == "3.13"
    ids = {f.id: f.severity for f in r.findings}
    assert ids["oom-risk"] == "error" and ids["cpu-oversubscribed"] in ("warn", "error")
    assert ids["oom-kills"] == "warn" and ids["python-cpu-count-unset"] == "warn"
    assert ids["workers-gunicorn-4101"] == "warn" and ids["blas-threads-4200"] == "warn"
    assert ids["memory-pressure"] == "warn"
    settings = [rec.setting for rec in r.recommendations]
    assert any(s.startswith("--workers 1 ") for s in settings)
    assert "PYTHON_CPU_COUNT=1" in settings
    assert any(s.startswith("OMP_NUM_THREADS=1 ") for s in settings)
    assert r.oom.visible_as_oomkilled is True and r.oom.victim_pid == 4113
    assert not any("SECRET_KEY" in p.env for p in r.processes)  # only the sizing knobs are kept


def test_cli_json_on_captured_tree(cli) -> None:  # type: ignore[no-untyped-def]
    root = DATA / "v2-k8s-container"
    res = cli("quota", "--pid", "4101", "--window", "0", "--json", "--proc-root", str(root / "proc"),
              "--fs-root", str(root / "root"))
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["schema"] == "obskit.quota/1"
    assert doc["cpu"]["limit"] == 0.5 and doc["services"][0]["workers"]["value"] == 129
    res = cli("quota", "--pid", "4101", "--window", "0", "--fail-on", "error", "--proc-root", str(root / "proc"),
              "--fs-root", str(root / "root"))
    assert res.exit_code == 3
    assert "129 = 2×64+1" in res.stdout and "oom-risk" in res.stderr
    assert res.stderr.startswith("obskit: error:") and res.stderr.count("\n") == 1


def test_cli_human_view_on_unlimited_tree_passes_fail_on_warn(cli) -> None:  # type: ignore[no-untyped-def]
    root = DATA / "v2-unlimited"
    res = cli("quota", "--window", "0", "--fail-on", "warn", "--proc-root", str(root / "proc"),
              "--fs-root", str(root / "root"))
    assert res.exit_code == 0, res.stderr
    assert "none (unlimited)" in res.stdout and "no CPU limit" in res.stdout


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["--fail-on", "sometimes"], 2, "--fail-on must be warn or error"),
        (["--window", "-1"], 2, "--window must be between"),
        (["--pid", "0"], 2, "--pid must be a positive"),
        (["--pid", "999999999"], 4, "process 999999999 not found"),
    ],
)
def test_cli_errors(cli, args: list[str], code: int, text: str) -> None:  # type: ignore[no-untyped-def]
    res = cli("quota", *args)
    assert res.exit_code == code
    assert text in res.stderr and "Traceback" not in res.stderr


def _builder():  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_synthetic", DATA / "build_synthetic.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_uvicorn_workers_and_forkserver_pool(tmp_path: Path) -> None:
    b = _builder()
    proc, root = tmp_path / "proc", tmp_path / "root"
    b.put(str(root), "sys/devices/system/cpu/online", "0-15\n")
    b.v2_level(str(root), "", cpu_max="200000 100000", mem_max=str(2 << 30))
    cg, py = "0::/\n", ["/usr/bin/python3.12", "/usr/lib/libpython3.12.so.1.0"]
    common = {"threads": 2, "uss_kb": 80_000, "shared_kb": 5_000, "oom_score": 600, "exe": "/usr/bin/python3.12",
              "maps": py, "cgroup": cg, "cpus": "0-15"}
    b.proc_entry(str(proc), 10, 0, 1, comm="uvicorn", env={"WEB_CONCURRENCY": "16"},
                 argv=["/usr/bin/python3.12", "/usr/local/bin/uvicorn", "app:app", "--host", "0.0.0.0"], **common)
    spawn = ["/usr/bin/python3.12", "-c", "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5)",
             "--multiprocessing-fork"]
    for i in range(16):
        b.proc_entry(str(proc), 11 + i, 10, 2 + i, comm="python3.12", env={}, argv=spawn, **common)
    b.proc_entry(str(proc), 40, 0, 30, comm="python3.12", env={}, argv=["/usr/bin/python3.12", "batch.py"], **common)
    fsrv = ["/usr/bin/python3.12", "-c", "from multiprocessing.forkserver import main; main(8, 9)"]
    b.proc_entry(str(proc), 41, 40, 31, comm="python3.12", env={}, argv=fsrv, **common)
    for i in range(3):
        b.proc_entry(str(proc), 42 + i, 41, 32 + i, comm="python3.12", env={}, argv=fsrv, **common)
    mi = b.mountinfo("/")
    b.put(str(proc), "10/mountinfo", mi)
    r = collect(10, 0, Roots(proc=str(proc), fs=str(root)))
    by = {s.master_pid: s for s in r.services}
    u = by[10]
    assert u.kind == "uvicorn" and u.running_workers == 16
    assert u.workers.value == 16 and u.workers.source == "env"
    assert u.workers.explanation == "WEB_CONCURRENCY: 16 = os.cpu_count() where 16 is the host CPU count"
    assert u.recommended_by_cpu == 2  # max(1, round_half_up(2.0))
    pool = by[40]
    assert pool.kind == "pool" and sorted(pool.worker_pids) == [42, 43, 44]
    assert 41 not in by  # the forkserver itself is a helper, not a service
    assert any(rec.setting.startswith("--workers 2 ") for rec in r.recommendations)


def test_render_says_one_worker_not_one_workers() -> None:
    import io

    from rich.console import Console

    from obskit.quota.render import render

    buf = io.StringIO()
    Console(file=buf, width=400, highlight=False).print(render(collect(4101, 0, tree("v2-k8s-container"))))
    text = buf.getvalue()
    assert "fits: 1 worker — by CPU" in text and "1 workers" not in text


# -- a debug container reading its target (shared PID namespace, its own cgroup namespace) ----------
def _debug_container_tree(tmp: Path, target_mount_root: str) -> tuple[Path, Path]:
    """/proc as a `kubectl debug --target` container sees it, and the debug container's own filesystem.

    The debug container's /sys/fs/cgroup is its own cgroup (0.1 CPU, not the target's); the target
    (PID 4242) reads ``0::/../cri-containerd-target.scope`` from here, and its own mount of the
    cgroup filesystem, reached through /proc/4242/root, holds its limits.
    """
    proc, debug = tmp / "proc", tmp / "debug"
    (proc / "self").mkdir(parents=True)
    (proc / "self/cgroup").write_text("0::/\n")
    (proc / "self/mountinfo").write_text("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
    own = debug / "sys/fs/cgroup"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("cpu memory pids\n")
    (own / "cpu.max").write_text("10000 100000\n")
    (own / "memory.max").write_text("67108864\n")
    target = proc / "4242"
    target.mkdir()
    (target / "cgroup").write_text("0::/../cri-containerd-target.scope\n")
    (target / "mountinfo").write_text(f"700 600 0:26 {target_mount_root} /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n")
    cg = target / "root/sys/fs/cgroup"
    cg.mkdir(parents=True)
    (cg / "cgroup.controllers").write_text("cpu memory pids\n")
    (cg / "cgroup.procs").write_text("4242\n4250\n")
    (cg / "cpu.max").write_text("50000 100000\n")
    (cg / "memory.max").write_text("314572800\n")
    (cg / "cpu.stat").write_text("usage_usec 9000000\nuser_usec 8000000\nsystem_usec 1000000\n"
                                 "nr_periods 200\nnr_throttled 150\nthrottled_usec 4000000\n")
    return proc, debug


@pytest.mark.parametrize("mount_root", ["/../cri-containerd-target.scope", "/../.."])
def test_debug_container_reads_the_targets_cgroup(tmp_path: Path, mount_root: str) -> None:
    """The target's limits (0.5 CPU, 300 MiB), not the debug container's own (0.1 CPU, 64 MiB).

    ``/../..`` is a target mount root that the path cannot be mapped through: found by content
    (the directory whose cgroup.procs lists the PID).
    """
    from obskit.proc import ProcFS

    proc, debug = _debug_container_tree(tmp_path, mount_root)
    located = cgroups.for_pid(ProcFS(proc), 4242, own_fs=str(debug))
    assert located.view == "target"
    quota, mem = located.cpu_quota(), located.memory_limit()
    assert quota is not None and quota.limit == pytest.approx(0.5)
    assert quota.level == str(proc / "4242/root/sys/fs/cgroup")
    assert mem is not None and mem.limit == 300 << 20
    t = located.throttling()
    assert t is not None and (t.periods, t.throttled) == (200, 150)


def test_own_view_is_used_when_it_holds_the_target(tmp_path: Path) -> None:
    """Without cgroup namespaces this process's mounts show the target's every ancestor: they win."""
    from obskit.proc import ProcFS

    proc, debug = _debug_container_tree(tmp_path, "/../cri-containerd-target.scope")
    (proc / "4242/cgroup").write_text("0::/kubepods/pod1/target\n")
    leaf = debug / "sys/fs/cgroup/kubepods/pod1/target"
    leaf.mkdir(parents=True)
    (leaf / "cpu.max").write_text("max 100000\n")
    (leaf.parent / "cpu.max").write_text("25000 100000\n")  # the pod's limit, on a parent
    located = cgroups.for_pid(ProcFS(proc), 4242, own_fs=str(debug))
    quota = located.cpu_quota()
    assert located.view == "own" and quota is not None
    assert quota.limit == pytest.approx(0.1)  # the smallest level: the mount root's 0.1 here
    assert [lv.limit for lv in quota.levels] == [None, 0.25, 0.1]


def test_cli_quota_from_a_debug_container(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    proc, _debug = _debug_container_tree(tmp_path, "/../cri-containerd-target.scope")
    target = proc / "4242"
    (target / "stat").write_text("4242 (python3) S 1 4242 4242 0 -1 4194560 100 0 0 0 50 10 0 0 20 0 1 0 100 "
                                 "1000000 2000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n")
    (target / "status").write_text("Name:\tpython3\nPid:\t4242\nPPid:\t1\nNSpid:\t4242\t1\nThreads:\t1\n"
                                   "VmRSS:\t20480 kB\nCpus_allowed_list:\t0-1\n")
    (target / "cmdline").write_bytes(b"python3\0app.py\0")
    (target / "maps").write_text("")
    r = cli("quota", "--pid", "4242", "--window", "0", "--json", "--proc-root", str(proc))
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["cpu"]["limit"] == pytest.approx(0.5) and doc["memory"]["limit"] == 300 << 20
