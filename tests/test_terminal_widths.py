"""Every table of ps, stacks, top and quota at 80 and 120 columns: the text that identifies a row is
there whole (never cut to something two rows share)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from conftest import CAPTURED

from obskit.cgroups import Roots
from obskit.profile.live import CpuThrottle, ProcessStats, TopFunction, TopWindow, render_window
from obskit.ps import PsEntry, PsReport
from obskit.ps import render as render_ps
from obskit.quota.collect import collect as collect_quota
from obskit.quota.render import render as render_quota
from obskit.stacks.classify import ThreadState
from obskit.stacks.dump import ProcessStacks, StackFrame, StacksReport, ThreadInfo, group_threads
from obskit.stacks.render import render as render_stacks

WIDTHS = [80, 120]
VENV = "/opt/services/billing/.venv/bin/python3.11"
GUNICORN = "/opt/services/billing/.venv/bin/gunicorn"


def text(renderable: Any, width: int) -> str:
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=width, highlight=False, color_system=None).print(renderable, crop=False)
    return buf.getvalue()


def _entry(pid: int, ppid: int, depth: int, role: str, command: str) -> PsEntry:
    return PsEntry(pid, ppid, depth, role, "3.11", True, 12.5, 150 << 20, 4, 3600.0, 0, "root",
                   "0123456789abcdef" * 4, None, None, "S", command, [])


@pytest.mark.parametrize("width", WIDTHS)
def test_ps_keeps_pid_and_the_distinguishing_command(width: int) -> None:
    scripts = ["/srv/apps/billing/jobs/reconcile_invoices.py", "/srv/apps/billing/jobs/reconcile_payments.py"]
    entries = [_entry(100, 1, 0, "gunicorn-master", f"{VENV} {GUNICORN} -w 3 billing.wsgi:app")]
    entries += [_entry(101 + i, 100, 1, "gunicorn-worker", f"{VENV} {GUNICORN} -w 3 billing.wsgi:app")
                for i in range(3)]
    entries += [_entry(200 + i, 1, 0, "plain", f"{VENV} -u {s} --region eu-west-1 --batch 500")
                for i, s in enumerate(scripts)]
    entries.append(_entry(300, 1, 0, "celery-main", f"{VENV} -m celery -A billing.tasks worker -c 4"))
    out = text(render_ps(PsReport(entries, 40, 7, 0.3, False)), width)
    lines = out.splitlines()
    assert all(len(ln) <= width for ln in lines), out
    for e in entries:
        assert any(str(e.pid) in ln.split("└─")[-1].split()[:1] for ln in lines), (e.pid, out)
    for s in scripts:  # the script, not the interpreter, and not cut
        name = s.rsplit("/", 1)[-1]
        assert sum(name in ln for ln in lines) == 1, out
    assert "gunicorn -w 3 billing.wsgi:app" in out and "python3.11 -m celery" in out
    assert VENV not in out  # the interpreter's path is not what tells processes apart


def _thread(pid: int, tid: int, state: ThreadState, fn: str) -> ThreadInfo:
    frames = [StackFrame(fn, "/srv/apps/billing/handlers/payments.py", "payments.py", 42),
              StackFrame("handle_request", "/srv/apps/billing/server.py", "server.py", 7)]
    return ThreadInfo(pid, tid, tid, "MainThread", state, "x", "detail", state is ThreadState.RUNNING,
                      state is ThreadState.RUNNING, frames)


@pytest.mark.parametrize("width", WIDTHS)
def test_stacks_keeps_pids_and_functions(width: int) -> None:
    fns = {100: "wait_for_settlement_confirmation", 101: "compute_invoice_totals_for_region", 102: "poll"}
    threads = [_thread(pid, pid * 10, ThreadState.RUNNING if pid == 101 else ThreadState.SLEEPING, fn)
               for pid, fn in fns.items()]
    procs = [ProcessStacks(pid, f"{VENV} -m gunicorn billing.wsgi:app", "3.11", 1, {}, [t], group_threads([t]))
             for pid, t in zip(fns, threads)]
    out = text(render_stacks(StacksReport(100, True, False, 0.0, procs, [], None)), width)
    for pid, fn in fns.items():
        assert f"Process {pid}" in out
        assert any(ln.split()[:1] == [str(pid)] for ln in out.splitlines()), out  # the workers table
        assert fn in out
    assert "compute_invoice_totals_for_region (payments.py:42)" in out.replace("\n", " ") or \
        "compute_invoice_totals_for_region" in out


@pytest.mark.parametrize("width", WIDTHS)
def test_top_keeps_function_names(width: int) -> None:
    names = ["obskit_hot_path_checksum_of_request_body", "obskit_hot_path_checksum_of_response_body"]
    fns = [TopFunction(n, "/srv/apps/billing/very/deep/package/module_name.py", 10 + i, 0.4, 0.5, 40, 50)
           for i, n in enumerate(names)]
    w = TopWindow(4242, False, 0.0, 2.0, 100, fns, [ProcessStats(4242, 95.0, 100 << 20, 4, 12)], 95.0, 100 << 20,
                  CpuThrottle("/sys/fs/cgroup/cpu/pod", 1, 0.5, 20, 15, 1.2, 0.75), "quota 0.5 CPUs")
    out = text(render_window(w, f"{VENV} -m billing.worker"), width)
    for n in names:
        assert sum(n in ln for ln in out.splitlines()) == 1, out
    assert "pid 4242" in out and "throttled" in out and "75%" in out


@pytest.mark.parametrize("width", WIDTHS)
def test_quota_keeps_services_and_findings(width: int) -> None:
    d = CAPTURED / "quota" / "v2-k8s-container"
    report = collect_quota(4101, 0, Roots(proc=str(d / "proc"), fs=str(d / "root")))
    out = text(render_quota(report), width)
    for s in report.services:
        assert f"pid {s.master_pid}:" in out
    for f in report.findings:
        assert f.title in out, (f.title, out)
    assert "CPU limit" in out and "0.5 CPU" in out


@pytest.mark.parametrize("width", WIDTHS)
def test_doctor_keeps_check_names(width: int) -> None:
    from obskit.doctor import CheckResult, DoctorReport
    from obskit.doctor import render as render_doctor

    checks = [CheckResult("target_visible", "pass", "process 4242 is visible in /proc/4242 of this PID namespace"),
              CheckResult("uid", "fail", "obskit runs as uid 1000, the target as uid 0: ptrace needs the same user",
                          "run as root, or as uid 0 with CAP_SYS_PTRACE (kubectl debug --profile=general)"),
              CheckResult("seccomp", "warn", "seccomp filter mode 2 may refuse process_vm_readv",
                          "run the debug container with --security-opt seccomp=unconfined")]
    out = text(render_doctor(DoctorReport(4242, checks, False, 6, False)), width)
    lines = out.splitlines()
    for c in checks:
        assert any(c.name in ln.split() for ln in lines), out
    assert "1 check(s) failed" in out and "(uid)" in out.replace("\n", " ")
