"""Why attaching works or fails here: one check per cause, each with the exact fix.

Every check is a function of a :class:`DoctorContext` (proc root, sys root, environment,
target PID) returning a :class:`CheckResult`, so tests drive them with captured files.
``obskit doctor`` prints them all (:func:`render`); :mod:`obskit.attach` runs
:data:`ATTACH_CHECKS`, in the same order, before attaching and when py-spy fails, so the
doctor and the attach error always name the same cause.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from obskit.errors import (
    ExitCode,
    ObskitError,
    PermissionDenied,
    TargetExited,
    TargetNotFound,
    TargetNotPython,
    Unavailable,
    UnsupportedVersion,
)

if TYPE_CHECKING:
    from rich.console import RenderableType

    from obskit.proc import ProcessFacts, ProcFS

CAP_SYS_PTRACE = 19
KUBECTL_RECIPE = "kubectl debug -it POD --image=IMAGE --target=CONTAINER --profile=general"
CAP_FIX = (
    "add CAP_SYS_PTRACE: `docker run --cap-add SYS_PTRACE`, Kubernetes securityContext.capabilities.add: [SYS_PTRACE], "
    f"or `{KUBECTL_RECIPE}`"
)



@dataclass
class CheckResult:
    name: str
    status: str  # pass | warn | fail | skip
    message: str
    fix: str = ""
    error: type[ObskitError] | None = None  # the error a failure maps to; JSON shows its class name
    exit_code: int = 0

    def to_error(self, pid: int | None) -> ObskitError:
        return (self.error or PermissionDenied)(self.message, self.fix, pid=pid)


@dataclass
class DoctorReport:
    SCHEMA = "obskit.doctor/1"

    pid: int | None
    checks: list[CheckResult]
    ok: bool
    exit_code: int
    kubernetes: bool
    recipe: str | None = None

    def error(self) -> ObskitError | None:
        """The first failing check as the one-line error (its exit code is the doctor's), or None."""
        failed = [c for c in self.checks if c.status == "fail"]
        if not failed:
            return None
        err = failed[0].to_error(self.pid)
        err.message = f"doctor check {failed[0].name} failed: {err.message}"
        return err


@dataclass
class DoctorContext:
    pid: int | None = None
    proc_root: str = "/proc"
    sys_root: str = "/"
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    output_dir: str = "."
    self_pid: str = "self"
    _facts: ProcessFacts | None = field(default=None, repr=False)

    @property
    def fs(self) -> ProcFS:
        """The /proc every check reads through (the live one, or a captured tree)."""
        from obskit.proc import ProcFS

        return ProcFS(self.proc_root)

    def facts(self) -> ProcessFacts:
        """What /proc says about the target (read once per context)."""
        assert self.pid is not None
        if self._facts is None:
            self._facts = self.fs.facts(self.pid)
        return self._facts

    @property
    def proc(self) -> Path:
        return self.fs.root

    def live(self) -> bool:
        return self.fs.is_live and self.self_pid == "self"

    def read(self, *parts: str) -> str | None:
        """A file under the proc root (``sys/kernel/...``, ``self/mountinfo``), or None if unreadable."""
        try:
            return self.fs.path(*parts).read_text()
        except OSError:
            return None

    def status(self, who: str) -> dict[str, str]:
        from obskit.proc import parse_status

        return parse_status(self.read(who, "status") or "")

    def cap_eff(self) -> int | None:
        value = self.status(self.self_pid).get("CapEff")
        try:
            return int(value, 16) if value else None
        except ValueError:
            return None

    def has_ptrace_cap(self) -> bool:
        caps = self.cap_eff()
        return caps is not None and bool(caps >> CAP_SYS_PTRACE & 1)

    def euid(self) -> int | None:
        if self.live():
            return os.geteuid()
        return _uid_field(self.status(self.self_pid).get("Uid"), 1)

    def target_uid(self) -> int | None:
        if self.pid is None:
            return None
        return _uid_field(self.status(str(self.pid)).get("Uid"), 1)

    def yama(self) -> int | None:
        text = self.read("sys", "kernel", "yama", "ptrace_scope")
        try:
            return int(text.strip()) if text is not None else None
        except ValueError:
            return None

    def target_visible(self) -> bool:
        return self.pid is not None and self.pid > 0 and self.fs.exists(self.pid)

    def in_kubernetes(self) -> bool:
        if self.environ.get("KUBERNETES_SERVICE_HOST"):
            return True
        return Path(self.sys_root, "var/run/secrets/kubernetes.io/serviceaccount").exists()

    def self_real_pid(self) -> int | None:
        if self.live():
            return os.getpid()
        try:
            return int(self.self_pid)
        except ValueError:
            line = self.status(self.self_pid).get("Pid")
            return int(line) if line and line.isdigit() else None

    def is_descendant(self, pid: int) -> bool:
        me = self.self_real_pid()
        seen = 0
        cur = pid
        while cur > 1 and seen < 4096:
            ppid = self.status(str(cur)).get("PPid")
            if not ppid or not ppid.isdigit():
                return False
            cur = int(ppid)
            if cur == me:
                return True
            seen += 1
        return False


def _uid_field(line: str | None, index: int) -> int | None:
    if not line:
        return None
    try:
        return int(line.split()[index])
    except (ValueError, IndexError):
        return None


def _fail(name: str, message: str, fix: str, error: type[ObskitError]) -> CheckResult:
    return CheckResult(name, "fail", message, fix, error, int(error.exit_code))


# -- the checks -------------------------------------------------------------------------------------
def check_sampler(ctx: DoctorContext) -> CheckResult:
    from obskit import pyspy

    try:
        path = pyspy.binary()
    except Unavailable as e:
        return _fail("sampler", e.message, e.hint, Unavailable)
    return CheckResult("sampler", "pass", f"py-spy {pyspy.version()} at {path}")


def check_target_visible(ctx: DoctorContext) -> CheckResult:
    if ctx.pid is None:
        return CheckResult("pid_namespace", "skip", "no --pid given")
    if ctx.pid <= 0:
        return _fail("pid_namespace", f"process {ctx.pid} is not a valid PID", "give a positive PID from `obskit ps`",
                     TargetNotFound)
    if not ctx.target_visible():
        fix = "check the PID with `obskit ps`"
        if ctx.in_kubernetes():
            fix = f"the target's PID namespace must be shared: `{KUBECTL_RECIPE}` or shareProcessNamespace: true"
        else:
            fix += "; from another container share the PID namespace (`docker run --pid=container:NAME`, `kubectl debug --target=CONTAINER`)"
        return _fail("pid_namespace", f"process {ctx.pid} is not visible from this PID namespace", fix, TargetNotFound)
    fs = ctx.fs
    if fs.is_zombie(ctx.pid):
        err = fs.zombie_error(ctx.pid)
        return _fail("pid_namespace", err.message, err.hint, TargetExited)
    same = _same_ns(ctx)
    where = {True: "same PID namespace as obskit", False: "another PID namespace, visible here", None: "visible"}[same]
    return CheckResult("pid_namespace", "pass", f"process {ctx.pid}: {where}")


def _same_ns(ctx: DoctorContext) -> bool | None:
    try:
        mine = os.readlink(ctx.proc / ctx.self_pid / "ns" / "pid")
        theirs = os.readlink(ctx.proc / str(ctx.pid) / "ns" / "pid")
    except OSError:
        return None
    return mine == theirs


def check_root_visible(ctx: DoctorContext) -> CheckResult:
    if ctx.pid is None:
        return CheckResult("proc_root", "skip", "no --pid given")
    if not ctx.target_visible():
        return CheckResult("proc_root", "skip", f"process {ctx.pid} not visible")
    root = ctx.proc / str(ctx.pid) / "root"
    try:
        os.listdir(root)
    except PermissionError:
        euid, tuid = ctx.euid(), ctx.target_uid()
        why = f": process {ctx.pid} runs as uid {tuid}, obskit as uid {euid}" if tuid is not None and tuid != euid else ""
        return _fail(
            "proc_root",
            f"cannot read {root} (py-spy reads the target's binary through it){why}",
            "run obskit as the target's user or with CAP_SYS_PTRACE; " + CAP_FIX,
            PermissionDenied,
        )
    except OSError as e:
        if not ctx.live():
            return CheckResult("proc_root", "skip", f"{root} not in the captured tree")
        return _fail("proc_root", f"cannot read {root}: {e.strerror}", "check that the process is still running", TargetNotFound)
    return CheckResult("proc_root", "pass", f"{root} is readable")


def check_python(ctx: DoctorContext) -> CheckResult:
    """The one check of "does it run Python, in a version the bundled py-spy reads" (doctor and attach)."""
    from obskit import pyspy

    if ctx.pid is None:
        return CheckResult("python", "skip", "no --pid given")
    if not ctx.target_visible():
        return CheckResult("python", "skip", f"process {ctx.pid} not visible")
    fs = ctx.fs
    try:
        facts = ctx.facts()
    except ObskitError as e:
        return _fail("python", e.message, e.hint, type(e))
    rng = pyspy.supported_range()
    if not facts.is_python:
        if facts.exe is None and not _readable(fs, ctx.pid, "maps"):
            # Another user's process: its binary and maps are closed to us, so the command line cannot settle it.
            return CheckResult("python", "skip", f"cannot tell whether process {ctx.pid} ({_short(facts.command)}) "
                               "runs Python: its binary and memory maps are not readable")
        return _fail("python", f"process {ctx.pid} ({_short(facts.command)}) is not running Python",
                     "pick a Python process from `obskit ps`", TargetNotPython)
    if facts.python_version is None:
        if facts.exe is None and not _readable(fs, ctx.pid, "maps"):
            return CheckResult("python", "skip", f"process {ctx.pid} looks like Python (its command line); its binary "
                               "and memory maps, which give the version, are not readable")
        return CheckResult("python", "warn", f"process {ctx.pid} looks like Python but its version is not in its "
                           "binary or maps", f"the bundled py-spy reads {rng}")
    if not pyspy.version_supported(facts.python_version):
        v = facts.python_version
        fix = f"the bundled py-spy reads {rng}; upgrade it (`pip install -U py-spy`)"
        if (pyspy.version_tuple(v) or (0, 0)) >= (3, 14):
            fix += (f"; Python {v} itself shows tasks and stacks: `python{v} -m asyncio ps {ctx.pid}`, "
                    f"`python{v} -m asyncio pstree {ctx.pid}`, `python{v} -m pdb -p {ctx.pid}`")
        return _fail("python", f"process {ctx.pid} runs Python {v}, which the bundled py-spy does not read",
                     fix, UnsupportedVersion)
    return CheckResult("python", "pass", f"process {ctx.pid} runs Python {facts.python_version} (py-spy reads {rng})")


def _readable(fs: ProcFS, pid: int, name: str) -> bool:
    try:
        fs.read_bytes(pid, name)
    except ObskitError:
        return False
    except OSError:
        return True  # readable in principle (e.g. EINVAL of an exiting process)
    return True


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def check_uid(ctx: DoctorContext) -> CheckResult:
    euid = ctx.euid()
    if ctx.pid is None:
        return CheckResult("uid", "pass" if euid is not None else "skip", f"obskit runs as uid {euid}")
    tuid = ctx.target_uid()
    if tuid is None or euid is None:
        return CheckResult("uid", "skip", f"uid of process {ctx.pid} or of obskit unknown")
    if tuid == euid:
        return CheckResult("uid", "pass", f"obskit and process {ctx.pid} both run as uid {euid}")
    if ctx.has_ptrace_cap():
        return CheckResult("uid", "pass", f"process {ctx.pid} runs as uid {tuid}, obskit as uid {euid} with CAP_SYS_PTRACE")
    return _fail(
        "uid",
        f"process {ctx.pid} runs as uid {tuid} and obskit as uid {euid} without CAP_SYS_PTRACE",
        f"run obskit as uid {tuid} (`sudo -u '#{tuid}' obskit ...`) or as root with CAP_SYS_PTRACE",
        PermissionDenied,
    )


def check_cap(ctx: DoctorContext) -> CheckResult:
    caps = ctx.cap_eff()
    if caps is None:
        return CheckResult("cap_sys_ptrace", "skip", "CapEff not readable")
    if caps >> CAP_SYS_PTRACE & 1:
        return CheckResult("cap_sys_ptrace", "pass", f"CAP_SYS_PTRACE is in the effective set (CapEff {caps:016x})")
    return CheckResult(
        "cap_sys_ptrace",
        "warn",
        f"CAP_SYS_PTRACE is not in the effective set (CapEff {caps:016x}); only processes of the same uid that ptrace_scope allows can be read",
        CAP_FIX,
    )


def check_yama(ctx: DoctorContext) -> CheckResult:
    scope = ctx.yama()
    name = "ptrace_scope"
    if scope is None:
        return CheckResult(name, "pass", "Yama LSM not active (no kernel.yama.ptrace_scope)")
    cap = ctx.has_ptrace_cap()
    sysctl = "on the node: `sysctl -w kernel.yama.ptrace_scope=0`"
    if scope == 0:
        return CheckResult(name, "pass", "kernel.yama.ptrace_scope is 0 (classic ptrace permissions)")
    if scope == 3:
        return _fail(name, "kernel.yama.ptrace_scope is 3: ptrace is disabled until reboot",
                     "nothing in this boot can attach; set it to 0-2 at boot (sysctl.conf) and reboot the node", PermissionDenied)
    if cap:
        return CheckResult(name, "pass", f"kernel.yama.ptrace_scope is {scope}; CAP_SYS_PTRACE allows attaching")
    if scope == 1:
        if ctx.pid is not None and ctx.is_descendant(ctx.pid):
            return CheckResult(name, "pass", f"kernel.yama.ptrace_scope is 1 and process {ctx.pid} is a descendant of obskit")
        msg = "kernel.yama.ptrace_scope is 1: only descendants can be traced without CAP_SYS_PTRACE"
        fix = f"{CAP_FIX}; or {sysctl}"
        if ctx.pid is None:
            return CheckResult(name, "warn", msg, fix)
        return _fail(name, msg, fix, PermissionDenied)
    msg = f"kernel.yama.ptrace_scope is {scope}: only CAP_SYS_PTRACE may trace"
    if ctx.pid is None:
        return CheckResult(name, "warn", msg, CAP_FIX)
    return _fail(name, msg, f"{CAP_FIX}; or {sysctl}", PermissionDenied)


def check_seccomp(ctx: DoctorContext) -> CheckResult:
    mode = ctx.status(ctx.self_pid).get("Seccomp")
    if mode is None:
        return CheckResult("seccomp", "skip", "Seccomp field not in status")
    if mode == "0":
        return CheckResult("seccomp", "pass", "no seccomp filter")
    if mode == "1":
        return _fail("seccomp", "seccomp strict mode: ptrace and process_vm_readv are refused",
                     "run obskit outside strict seccomp", PermissionDenied)
    kernel = (ctx.read("sys", "kernel", "osrelease") or "").strip()
    fix = ("if attaching fails with EPERM: `docker run --security-opt seccomp=unconfined` or a Kubernetes "
           "seccompProfile of type Unconfined; Docker's default profile allows ptrace and process_vm_readv "
           "with CAP_SYS_PTRACE on kernels >= 4.8")
    if ctx.has_ptrace_cap() and _kernel_at_least(kernel, (4, 8)):
        return CheckResult("seccomp", "pass", f"seccomp filter active (mode 2); with CAP_SYS_PTRACE on kernel {kernel} the default profiles allow attaching")
    return CheckResult("seccomp", "warn", f"seccomp filter active (mode 2){' on kernel ' + kernel if kernel else ''}; it may refuse ptrace/process_vm_readv", fix)


def _kernel_at_least(release: str, want: tuple[int, int]) -> bool:
    try:
        major, minor = (int(x) for x in release.split("-")[0].split(".")[:2])
    except ValueError:
        return True
    return (major, minor) >= want


def check_output_dir(ctx: DoctorContext) -> CheckResult:
    d = Path(ctx.output_dir).resolve()
    if d.is_dir() and os.access(d, os.W_OK | os.X_OK):
        return CheckResult("output_dir", "pass", f"{d} is writable")
    return CheckResult("output_dir", "warn", f"{d} is not writable: profiles and bundles cannot be saved there",
                       "pass -o /tmp/NAME (or cd to a writable directory)")


def check_cgroup(ctx: DoctorContext) -> CheckResult:
    text = ctx.read(ctx.self_pid, "mountinfo") or ""
    v1 = v2 = False
    for line in text.splitlines():
        _, sep, tail = line.partition(" - ")
        fstype = tail.split(" ", 1)[0] if sep else ""
        v2 |= fstype == "cgroup2"
        v1 |= fstype == "cgroup"
    if not text:
        root = Path(ctx.sys_root, "sys/fs/cgroup")
        v2 = (root / "cgroup.controllers").exists()
        v1 = (root / "cpu").exists() or (root / "cpu,cpuacct").exists() or (root / "memory").exists()
    if v1 and v2:
        return CheckResult("cgroup", "pass", "cgroup hybrid (v1 controllers, v2 unified tree): quotas are read from the v1 cpu/memory controllers")
    if v2:
        return CheckResult("cgroup", "pass", "cgroup v2 (unified)")
    if v1:
        return CheckResult("cgroup", "pass", "cgroup v1")
    return CheckResult("cgroup", "warn", "no cgroup file system mounted: container quotas cannot be read",
                       "mount /sys/fs/cgroup (read-only is enough) to see CPU/memory limits")


def check_kubernetes(ctx: DoctorContext) -> CheckResult:
    if not ctx.in_kubernetes():
        return CheckResult("kubernetes", "pass", "not inside Kubernetes")
    return CheckResult(
        "kubernetes",
        "pass",
        "inside Kubernetes: to reach another container's processes, run obskit in an ephemeral debug container",
        f"`{KUBECTL_RECIPE}` (then `obskit ps` lists the target's processes)",
    )


def check_gdb(ctx: DoctorContext) -> CheckResult:
    """gdb loads the agent into Python 3.9-3.13 processes (`--inject`); never part of the attach preflight."""
    import shutil

    found = shutil.which("gdb", path=ctx.environ.get("PATH", os.defpath))
    if found:
        return CheckResult("gdb", "pass", f"gdb found ({found}): `obskit gc|mem --inject` can load the agent into Python 3.9-3.13")
    return CheckResult("gdb", "warn", "gdb not found: `--inject` cannot load the agent into Python 3.9-3.13 "
                       "(sampling commands do not need it; 3.14+ uses sys.remote_exec)",
                       "`apt-get install gdb` (Debian/Ubuntu), or start the target under `obskit run -- CMD`")


Check = Callable[[DoctorContext], CheckResult]

# What must hold to attach to a PID, in the order the first failure is reported: the doctor shows
# the same first failure as every attaching command (obskit.attach.preflight).
ATTACH_CHECKS: list[Check] = [check_target_visible, check_python, check_uid, check_yama, check_seccomp, check_root_visible]
ALL_CHECKS: list[Check] = [
    check_sampler, check_target_visible, check_python, check_uid, check_cap, check_yama, check_seccomp,
    check_root_visible, check_output_dir, check_cgroup, check_kubernetes, check_gdb,
]


def run_checks(ctx: DoctorContext, checks: list[Check] | None = None) -> DoctorReport:
    results = [check(ctx) for check in (checks if checks is not None else ALL_CHECKS)]
    failed = [r for r in results if r.status == "fail"]
    k8s = ctx.in_kubernetes()
    return DoctorReport(
        pid=ctx.pid,
        checks=results,
        ok=not failed,
        exit_code=failed[0].exit_code if failed else int(ExitCode.OK),
        kubernetes=k8s,
        recipe=KUBECTL_RECIPE if k8s else None,
    )


def first_failure(ctx: DoctorContext, checks: list[Check]) -> CheckResult | None:
    """The first of ``checks`` that fails (the ones after it are not run), or None."""
    for check in checks:
        result = check(ctx)
        if result.status == "fail":
            return result
    return None


def seccomp_suspect(proc_root: str = "/proc") -> CheckResult | None:
    """The seccomp warning, when a filter may be what refused an attach the other checks allow."""
    r = check_seccomp(DoctorContext(proc_root=proc_root))
    return r if r.status == "warn" else None


_MARK = {"pass": "[green]pass[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]", "skip": "[dim]skip[/]"}


def render(report: DoctorReport) -> RenderableType:
    """The terminal view: one line per check, the fix under each failure or warning, then the verdict."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from obskit.output import escape

    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for c in report.checks:
        table.add_row(_MARK[c.status], c.name, Text(c.message))
        if c.fix and c.status in ("fail", "warn"):
            table.add_row("", "", Text.from_markup(f"[dim]fix:[/] {escape(c.fix)}"))
        elif c.fix and c.name == "kubernetes":
            table.add_row("", "", Text.from_markup(f"[dim]use:[/] {escape(c.fix)}"))
    failed = [c for c in report.checks if c.status == "fail"]
    if failed:
        verdict = (f"[bold red]{len(failed)} check(s) failed[/]: attaching will not work until the first fix "
                   f"({failed[0].name}) is applied.")
    else:
        target = f"process {report.pid}" if report.pid is not None else "Python processes here"
        verdict = f"[green]ready[/]: obskit can attach to {target}."
    return Group(table, Text(""), Text.from_markup(verdict))
