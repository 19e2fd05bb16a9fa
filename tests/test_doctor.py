"""`obskit doctor`: each check driven by captured /proc files (tests/data/doctor), and the CLI's exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pytest
from conftest import CAPTURED, Result

from obskit import attach, doctor
from obskit.attach import preflight
from obskit.doctor import DoctorContext, run_checks
from obskit.errors import ExitCode, PermissionDenied, UnsupportedVersion

DATA = CAPTURED / "doctor"
TARGET = 29226  # the pid of the captured target files


def make_tree(
    tmp_path: Path,
    *,
    me: str = "self_status_root.txt",
    target: str | None = "target_status_root.txt",
    yama: int | None = None,
    mountinfo: str = "mountinfo_hybrid.txt",
    osrelease: str = "6.1.0-28-amd64",
    maps: str | None = None,
    cmdline: bytes | None = None,
    descendant: bool = False,
) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    shutil.copy(DATA / me, proc / "self" / "status")
    shutil.copy(DATA / mountinfo, proc / "self" / "mountinfo")
    (proc / "sys" / "kernel").mkdir(parents=True)
    (proc / "sys" / "kernel" / "osrelease").write_text(osrelease + "\n")
    if yama is not None:
        (proc / "sys" / "kernel" / "yama").mkdir()
        (proc / "sys" / "kernel" / "yama" / "ptrace_scope").write_text(f"{yama}\n")
    if target is not None:
        t = proc / str(TARGET)
        t.mkdir()
        status = (DATA / target).read_text()
        if descendant:
            status = status.replace("PPid:\t29221", "PPid:\t29224")
        (t / "status").write_text(status)
        shutil.copy(DATA / "target_stat.txt", t / "stat")
        (t / "cmdline").write_bytes(cmdline if cmdline is not None else (DATA / "target_cmdline.bin").read_bytes())
        (t / "maps").write_text(maps if maps is not None else (DATA / "target_maps.txt").read_text())
    return proc


def checks(proc: Path, tmp_path: Path, pid: int | None = TARGET, **env: str) -> dict[str, doctor.CheckResult]:
    ctx = DoctorContext(pid=pid, proc_root=str(proc), sys_root=str(tmp_path), environ=dict(env), output_dir=str(tmp_path))
    return {c.name: c for c in run_checks(ctx).checks}


def test_captured_root_host_passes(tmp_path: Path) -> None:
    proc = make_tree(tmp_path)
    res = checks(proc, tmp_path)
    assert {n: c.status for n, c in res.items() if n not in ("sampler", "gdb")} == {
        "pid_namespace": "pass", "proc_root": "skip", "python": "pass", "uid": "pass", "cap_sys_ptrace": "pass",
        "ptrace_scope": "pass", "seccomp": "pass", "output_dir": "pass", "cgroup": "pass", "kubernetes": "pass",
    }
    assert "3.11" in res["python"].message
    assert "hybrid" in res["cgroup"].message


def test_docker_default_caps_other_uid_fails_with_fix(tmp_path: Path) -> None:
    proc = make_tree(tmp_path, me="self_status_docker_default.txt", target="target_status_uid1000.txt")
    res = checks(proc, tmp_path)
    assert res["cap_sys_ptrace"].status == "warn" and "SYS_PTRACE" in res["cap_sys_ptrace"].fix
    assert res["uid"].status == "fail" and res["uid"].exit_code == ExitCode.PERMISSION_DENIED
    assert "uid 1000" in res["uid"].message and "uid 0" in res["uid"].message
    assert res["seccomp"].status == "warn" and "seccomp=unconfined" in res["seccomp"].fix
    report = run_checks(DoctorContext(pid=TARGET, proc_root=str(proc), sys_root=str(tmp_path), environ={}))
    assert report.exit_code == ExitCode.PERMISSION_DENIED and not report.ok


@pytest.mark.parametrize(
    ("me", "yama", "descendant", "status"),
    [
        ("self_status_user1000.txt", 0, False, "pass"),
        ("self_status_user1000.txt", 1, False, "fail"),
        ("self_status_user1000.txt", 1, True, "pass"),
        ("self_status_user1000.txt", 2, True, "fail"),
        ("self_status_root.txt", 2, False, "pass"),
        ("self_status_root.txt", 3, False, "fail"),
        ("self_status_root.txt", None, False, "pass"),
    ],
)
def test_yama_ptrace_scope(tmp_path: Path, me: str, yama: int | None, descendant: bool, status: str) -> None:
    target = "target_status_uid1000.txt" if "1000" in me else "target_status_root.txt"
    proc = make_tree(tmp_path, me=me, target=target, yama=yama, descendant=descendant)
    res = checks(proc, tmp_path)
    assert res["ptrace_scope"].status == status, res["ptrace_scope"]
    assert res["uid"].status == "pass"
    if status == "fail":
        assert res["ptrace_scope"].fix
        assert preflight_error(proc) is not None


def preflight_error(proc: Path) -> PermissionDenied | None:
    try:
        preflight(TARGET, proc_root=str(proc))
    except PermissionDenied as e:
        return e
    return None


def test_yama_without_pid_is_a_warning(tmp_path: Path) -> None:
    proc = make_tree(tmp_path, me="self_status_user1000.txt", yama=1, target=None)
    res = checks(proc, tmp_path, pid=None)
    assert res["ptrace_scope"].status == "warn"
    assert res["python"].status == "skip" and res["pid_namespace"].status == "skip"


@pytest.mark.parametrize(("osrelease", "status"), [("6.1.0-28-amd64", "pass"), ("4.4.0-210-generic", "warn")])
def test_seccomp_filter_with_cap(tmp_path: Path, osrelease: str, status: str) -> None:
    me = tmp_path / "me.txt"
    me.write_text((DATA / "self_status_root.txt").read_text().replace("Seccomp:\t0", "Seccomp:\t2"))
    proc = make_tree(tmp_path, osrelease=osrelease)
    shutil.copy(me, proc / "self" / "status")
    assert checks(proc, tmp_path)["seccomp"].status == status


def test_seccomp_strict_fails(tmp_path: Path) -> None:
    proc = make_tree(tmp_path)
    status = proc / "self" / "status"
    status.write_text(status.read_text().replace("Seccomp:\t0", "Seccomp:\t1"))
    assert checks(proc, tmp_path)["seccomp"].status == "fail"


def test_target_not_visible_not_python_unsupported(tmp_path: Path) -> None:
    proc = make_tree(tmp_path, target=None)
    res = checks(proc, tmp_path)
    assert res["pid_namespace"].status == "fail" and res["pid_namespace"].exit_code == ExitCode.TARGET_NOT_FOUND
    assert res["python"].status == "skip"
    k8s = checks(proc, tmp_path, KUBERNETES_SERVICE_HOST="10.0.0.1")
    assert "--target=CONTAINER" in k8s["pid_namespace"].fix

    other = tmp_path / "b"
    other.mkdir()
    proc2 = make_tree(other, maps="7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n", cmdline=b"sleep\x0060\x00")
    res2 = checks(proc2, other)
    assert res2["python"].status == "fail" and res2["python"].exit_code == ExitCode.TARGET_NOT_PYTHON

    new = tmp_path / "c"
    new.mkdir()
    proc3 = make_tree(new, maps="7f00-7f01 r-xp 0 08:01 1 /usr/lib/libpython3.14.so.1.0\n")
    res3 = checks(proc3, new)
    assert res3["python"].status == "fail" and res3["python"].exit_code == ExitCode.UNSUPPORTED_VERSION
    assert "asyncio ps" in res3["python"].fix
    with pytest.raises(UnsupportedVersion) as info:
        preflight(TARGET, proc_root=str(proc3))
    assert "python3.14 -m asyncio pstree" in info.value.hint


@pytest.mark.parametrize(
    ("mountinfo", "word"), [("mountinfo_v1.txt", "cgroup v1"), ("mountinfo_v2.txt", "cgroup v2"), ("mountinfo_hybrid.txt", "hybrid")]
)
def test_cgroup_version(tmp_path: Path, mountinfo: str, word: str) -> None:
    proc = make_tree(tmp_path, mountinfo=mountinfo)
    assert word in checks(proc, tmp_path)["cgroup"].message


def test_kubernetes_recipe_from_env_or_service_account(tmp_path: Path) -> None:
    proc = make_tree(tmp_path)
    assert checks(proc, tmp_path)["kubernetes"].message == "not inside Kubernetes"
    by_env = checks(proc, tmp_path, KUBERNETES_SERVICE_HOST="10.0.0.1")["kubernetes"]
    assert doctor.KUBECTL_RECIPE in by_env.fix
    (tmp_path / "var/run/secrets/kubernetes.io/serviceaccount").mkdir(parents=True)
    assert "inside Kubernetes" in checks(proc, tmp_path)["kubernetes"].message


def test_output_dir_not_writable(tmp_path: Path) -> None:
    proc = make_tree(tmp_path)
    ctx = DoctorContext(pid=TARGET, proc_root=str(proc), sys_root=str(tmp_path), environ={},
                        output_dir=str(tmp_path / "missing"))
    res = {c.name: c for c in run_checks(ctx).checks}
    assert res["output_dir"].status == "warn" and "-o" in res["output_dir"].fix


def test_sampler_failure_reports_the_doctor_cause(tmp_path: Path) -> None:
    proc = make_tree(tmp_path, me="self_status_docker_default.txt", target="target_status_uid1000.txt")
    err = attach.explain_failure(TARGET, "Error: Operation not permitted (os error 1)\n", proc_root=str(proc))
    assert isinstance(err, PermissionDenied)
    assert "uid 1000" in err.message and "CAP_SYS_PTRACE" in err.message
    pre = preflight_error(proc)
    assert pre is not None and pre.exit_code == ExitCode.PERMISSION_DENIED and pre.hint
    # nothing in the checks explains it, but a seccomp filter may: say so
    same = tmp_path / "s"
    same.mkdir()
    proc2 = make_tree(same, me="self_status_docker_default.txt", target="target_status_root.txt")
    err2 = attach.explain_failure(TARGET, "Error: Operation not permitted (os error 1)\n", proc_root=str(proc2))
    assert "seccomp" in err2.message and "unconfined" in err2.hint


def test_cli_exit_code_is_first_failure(tmp_path: Path, cli: Callable[..., Result]) -> None:
    proc = make_tree(tmp_path, me="self_status_docker_default.txt", target="target_status_uid1000.txt")
    r = cli("doctor", "--pid", str(TARGET), "--proc-root", str(proc), "--sys-root", str(tmp_path), "--json",
            "-o", str(tmp_path))
    assert r.exit_code == ExitCode.PERMISSION_DENIED
    data = json.loads(r.stdout)
    assert data["schema"] == "obskit.doctor/1" and data["exit_code"] == 6 and data["ok"] is False
    human = cli("doctor", "--pid", str(TARGET), "--proc-root", str(proc), "--sys-root", str(tmp_path), "-o", str(tmp_path))
    assert human.exit_code == 6
    assert "FAIL  uid" in human.stdout and "fix:" in human.stdout


def test_cli_live_self_check(cli: Callable[..., Result], tmp_path: Path) -> None:
    import os

    r = cli("doctor", "--pid", str(os.getpid()), "--json", "-o", str(tmp_path))
    data = json.loads(r.stdout)
    by = {c["name"]: c for c in data["checks"]}
    assert by["pid_namespace"]["status"] == "pass" and by["uid"]["status"] == "pass"
    assert r.exit_code == (0 if data["ok"] else data["exit_code"])
    gone = cli("doctor", "--pid", "999999999")
    assert gone.exit_code == ExitCode.TARGET_NOT_FOUND


# -- bad input (QA) --------------------------------------------------------------------------
def test_failed_check_is_also_one_error_line(cli: Callable[..., Result]) -> None:
    """The report goes to stdout (valid JSON with --json); stderr gets the usual one line."""
    r = cli("doctor", "--pid", "999999999", "--json")
    assert r.exit_code == 4
    assert json.loads(r.stdout)["exit_code"] == 4
    assert r.stderr.count("\n") == 1
    assert r.stderr.startswith("obskit: error: doctor check pid_namespace failed: process 999999999 is not visible")


def test_zombie_fails_pid_namespace_with_exit_8(zombie_pid: str, cli: Callable[..., Result]) -> None:
    r = cli("doctor", "--pid", zombie_pid, "--json")
    assert r.exit_code == 8, r.stderr
    first = next(c for c in json.loads(r.stdout)["checks"] if c["status"] == "fail")
    assert first["name"] == "pid_namespace" and first["error"] == "TargetExited"
    assert r.stderr.count("\n") == 1 and "has exited (a zombie" in r.stderr


# -- one story: the doctor and every attaching command name the same first cause ------------------
SETPRIV = shutil.which("setpriv")


def _as_nobody_works() -> str | None:
    import os
    import subprocess
    import sys

    if os.geteuid() != 0:
        return "needs root to run obskit as another user"
    if SETPRIV is None:
        return "setpriv not installed"
    r = subprocess.run([SETPRIV, "--reuid", "65534", "--regid", "65534", "--clear-groups", sys.executable, "-c",
                        "import obskit.commands"], capture_output=True, text=True, timeout=60, cwd="/")
    return None if r.returncode == 0 else f"uid 65534 cannot run this Python: {r.stderr.strip()[-200:]}"


@pytest.mark.skipif(_as_nobody_works() is not None, reason=str(_as_nobody_works()))
def test_non_root_against_root_process_doctor_and_attach_agree(tmp_path: Path) -> None:
    """Issue: as a non-root user, doctor headlined an unreadable /proc/N/root while profile record named the uid."""
    import subprocess
    import sys

    assert SETPRIV is not None
    target = subprocess.Popen([sys.executable, "-c", "import time\nprint('ready', flush=True)\ntime.sleep(120)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None and target.stdout.readline().startswith("ready")
        pid = str(target.pid)

        def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([SETPRIV, "--reuid", "65534", "--regid", "65534", "--clear-groups", sys.executable,
                                   "-m", "obskit", *args], capture_output=True, text=True, timeout=120, cwd="/")

        doc = as_nobody("doctor", "--pid", pid, "-o", "/tmp")
        rec = as_nobody("profile", "record", "--pid", pid, "-d", "1", "-o", "/tmp/obskit-nobody-never-written.html")
        stk = as_nobody("stacks", "--pid", pid)
        assert doc.returncode == rec.returncode == stk.returncode == ExitCode.PERMISSION_DENIED, (doc, rec, stk)
        first_fail = next(ln for ln in doc.stdout.splitlines() if ln.startswith("FAIL"))
        assert first_fail.split()[1] == "uid", doc.stdout
        cause = f"process {pid} runs as uid 0 and obskit as uid 65534 without CAP_SYS_PTRACE"
        assert doc.stderr == f"obskit: error: doctor check uid failed: {cause} (run obskit as uid 0 (`sudo -u '#0' obskit ...`) or as root with CAP_SYS_PTRACE)\n"
        # the attach error is the same sentence, whichever command attaches
        for r in (rec, stk):
            assert r.stderr.endswith(f"obskit: error: cannot attach to process {pid}: {cause} "
                                     "(run obskit as uid 0 (`sudo -u '#0' obskit ...`) or as root with CAP_SYS_PTRACE)\n")
            assert r.stderr.count("obskit: error:") == 1
        assert not Path("/tmp/obskit-nobody-never-written.html").exists()
    finally:
        target.kill()
        target.wait()


def test_attach_layer_has_no_import_circle() -> None:
    """pyspy drives py-spy and imports neither attach nor doctor; doctor never imports attach; none imports commands."""
    import ast

    import obskit

    root = Path(obskit.__file__).parent

    def imports(name: str) -> set[str]:
        tree = ast.parse((root / f"{name}.py").read_text())
        out: set[str] = set()
        for node in ast.walk(tree):  # imports inside functions count too
            if isinstance(node, ast.ImportFrom) and node.module:
                out.add(node.module)
                out.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
        return out

    def touches(name: str, modules: set[str]) -> set[str]:
        return {m for m in imports(name) if any(m == x or m.startswith(x + ".") for x in modules)}

    assert touches("pyspy", {"obskit.attach", "obskit.doctor", "obskit.targets", "obskit.commands", "commands"}) == set()
    assert touches("doctor", {"obskit.attach", "obskit.targets", "obskit.commands", "commands"}) == set()
    assert touches("targets", {"obskit.attach", "obskit.doctor", "obskit.commands", "commands"}) == set()
    assert touches("attach", {"obskit.targets", "obskit.commands", "commands", "obskit.profile", "obskit.stacks"}) == set()
