"""Build the cgroup v2 trees this host cannot produce (it has no v2 controllers), in the real files' formats.

Formats follow Documentation/admin-guide/cgroup-v2.rst, Documentation/accounting/psi.rst and the
captured contents quoted in /work/shared/reference/quotas.md; /proc files follow proc(5) and the
real files captured in v1-hybrid-nested/.  Re-run to regenerate: python build_synthetic.py
"""

from __future__ import annotations

import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
SCOPE = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f1e2d3c_4b5a_6978_8a9b_0c1d2e3f4a5b.slice/" \
        "cri-containerd-3b1f0c9e8d7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c.scope"


def put(root: str, rel: str, text: str | bytes) -> None:
    path = os.path.join(root, rel.lstrip("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)


def mountinfo(cg_root: str, cg_mount: str = "/sys/fs/cgroup", escaped: bool = False) -> str:
    point = cg_mount.replace(" ", "\\040") if escaped else cg_mount
    return (
        "1310 1190 0:222 / / rw,relatime master:512 - overlay overlay rw,lowerdir=/var/lib/containerd/l1,"
        "upperdir=/var/lib/containerd/u1,workdir=/var/lib/containerd/w1\n"
        "1311 1310 0:225 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n"
        "1313 1310 0:226 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro\n"
        f"1314 1313 0:30 {cg_root} {point} ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 "
        "rw,nsdelegate,memory_recursiveprot\n"
        "1320 1310 0:228 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k\n"
    )


def cpu_stat(usage: int, periods: int, throttled: int, throttled_usec: int) -> str:
    return (f"usage_usec {usage}\nuser_usec {usage * 9 // 10}\nsystem_usec {usage // 10}\n"
            f"nr_periods {periods}\nnr_throttled {throttled}\nthrottled_usec {throttled_usec}\n"
            "nr_bursts 0\nburst_usec 0\n")


def psi(some: float, full: float) -> str:
    return (f"some avg10={some:.2f} avg60={some / 2:.2f} avg300={some / 4:.2f} total=123456789\n"
            f"full avg10={full:.2f} avg60={full / 2:.2f} avg300={full / 4:.2f} total=2345678\n")


def memory_stat(anon: int, file: int, inactive_file: int, shmem: int = 0) -> str:
    keys = [("anon", anon), ("file", file), ("kernel", 8 << 20), ("kernel_stack", 1 << 20), ("pagetables", 2 << 20),
            ("sec_pagetables", 0), ("percpu", 4096), ("sock", 0), ("vmalloc", 0), ("shmem", shmem),
            ("zswap", 0), ("zswapped", 0), ("file_mapped", file // 2), ("file_dirty", 0), ("file_writeback", 0),
            ("swapcached", 0), ("anon_thp", 0), ("file_thp", 0), ("shmem_thp", 0),
            ("inactive_anon", anon // 3), ("active_anon", anon - anon // 3), ("inactive_file", inactive_file),
            ("active_file", file - inactive_file), ("unevictable", 0), ("slab_reclaimable", 1 << 20),
            ("slab_unreclaimable", 1 << 20), ("slab", 2 << 20), ("workingset_refault_anon", 0),
            ("pgfault", 123456), ("pgmajfault", 12)]
    return "".join(f"{k} {v}\n" for k, v in keys)


def v2_level(root: str, d: str, *, cpu_max: str | None, mem_max: str | None, mem_high: str = "max",
             controllers: str = "cpuset cpu io memory hugetlb pids rdma misc") -> None:
    base = f"sys/fs/cgroup{d}"
    put(root, f"{base}/cgroup.controllers", controllers + "\n")
    if cpu_max is not None:
        put(root, f"{base}/cpu.max", cpu_max + "\n")
        put(root, f"{base}/cpu.weight", "100\n")
    if mem_max is not None:
        put(root, f"{base}/memory.max", mem_max + "\n")
        put(root, f"{base}/memory.high", mem_high + "\n")


STAT_TAIL = " 0 0 20 0 {threads} 0 {start} 123456789 {rss_pages} 18446744073709551615 1 1 0 0 0 0 0 16781312 " \
            "134234626 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0"


def proc_entry(proc: str, pid: int, ppid: int, nspid: int, *, comm: str, argv: list[str], env: dict[str, str],
               threads: int, uss_kb: int, shared_kb: int, oom_score: int, exe: str, maps: list[str],
               cgroup: str, utime: int = 100, cwd_files: dict[str, str] | None = None, cpus: str = "0-63") -> None:
    d = os.path.join(proc, str(pid))
    rss_kb = uss_kb + shared_kb * 3
    stat = (f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 1000 0 0 0 {utime} 10 0 0"
            + STAT_TAIL.format(threads=threads, start=1000 + pid, rss_pages=rss_kb // 4))
    put(d, "stat", stat + "\n")
    put(d, "status", f"Name:\t{comm}\nState:\tS (sleeping)\nTgid:\t{pid}\nPid:\t{pid}\nPPid:\t{ppid}\n"
        f"NSpid:\t{pid}\t{nspid}\nVmRSS:\t{rss_kb} kB\nThreads:\t{threads}\n"
        f"Cpus_allowed:\tffffffff,ffffffff\nCpus_allowed_list:\t{cpus}\n")
    put(d, "cmdline", "\0".join(argv) + "\0")
    put(d, "environ", "".join(f"{k}={v}\0" for k, v in env.items()))
    pss = uss_kb + shared_kb
    put(d, "smaps_rollup", (
        f"55d0c0a00000-7ffd1e3f2000 ---p 00000000 00:00 0                          [rollup]\n"
        f"Rss:            {rss_kb} kB\nPss:            {pss} kB\nPss_Dirty:      {uss_kb} kB\n"
        f"Pss_Anon:       {uss_kb} kB\nPss_File:       {shared_kb} kB\nPss_Shmem:      0 kB\n"
        f"Shared_Clean:   {shared_kb * 3} kB\nShared_Dirty:   0 kB\nPrivate_Clean:  {uss_kb // 10} kB\n"
        f"Private_Dirty:  {uss_kb - uss_kb // 10} kB\nReferenced:     {rss_kb} kB\nAnonymous:      {uss_kb} kB\n"
        "KSM:            0 kB\nLazyFree:       0 kB\nAnonHugePages:  0 kB\nShmemPmdMapped: 0 kB\n"
        "FilePmdMapped:  0 kB\nShared_Hugetlb: 0 kB\nPrivate_Hugetlb: 0 kB\nSwap:           0 kB\n"
        "SwapPss:        0 kB\nLocked:         0 kB\n"))
    put(d, "oom_score", f"{oom_score}\n")
    put(d, "oom_score_adj", "999\n" if nspid != 1 else "-997\n")
    put(d, "cgroup", cgroup)
    put(d, "maps", "".join(
        f"7f{i:010x}000-7f{i:010x}fff r-xp 00000000 fd:01 {1000 + i}                    {m}\n"
        for i, m in enumerate(maps)))
    os.makedirs(os.path.join(d, "cwd"), exist_ok=True)
    for name, text in (cwd_files or {}).items():
        put(os.path.join(d, "cwd"), name, text)
    os.makedirs(os.path.join(d, "root"), exist_ok=True)
    link = os.path.join(d, "exe")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(exe, link)


def k8s_container() -> None:
    """A pod container on a 64-CPU node, cgroup v2 without a private cgroupns: the mount root is the
    container's scope (not "/"), the app sits in a sub-cgroup; 0.5 CPU, 512 MiB, oom.group=1."""
    top = os.path.join(HERE, "v2-k8s-container")
    shutil.rmtree(top, ignore_errors=True)
    root, proc = os.path.join(top, "root"), os.path.join(top, "proc")
    put(root, "sys/devices/system/cpu/online", "0-63\n")
    v2_level(root, "", cpu_max="50000 100000", mem_max=str(512 << 20))
    v2_level(root, "/app", cpu_max="max 100000", mem_max="max")
    base = "sys/fs/cgroup/app"
    put(root, f"{base}/cpu.stat", cpu_stat(98_765_432, 40_000, 14_000, 1_234_567_890))
    put(root, "sys/fs/cgroup/cpu.stat", cpu_stat(98_765_432, 40_000, 14_000, 1_234_567_890))
    put(root, f"{base}/cpuset.cpus.effective", "0-63\n")
    put(root, f"{base}/memory.current", str(430 << 20) + "\n")
    put(root, f"{base}/memory.peak", str(511 << 20) + "\n")
    put(root, f"{base}/memory.stat", memory_stat(400 << 20, 30 << 20, 20 << 20, 4 << 20))
    put(root, f"{base}/memory.events", "low 0\nhigh 0\nmax 57\noom 3\noom_kill 3\noom_group_kill 0\n")
    put(root, f"{base}/memory.events.local", "low 0\nhigh 0\nmax 57\noom 3\noom_kill 3\noom_group_kill 0\n")
    put(root, f"{base}/memory.oom.group", "1\n")
    put(root, f"{base}/memory.swap.max", "0\n")
    put(root, f"{base}/pids.max", "max\n")
    put(root, "sys/fs/cgroup/pids.max", "4096\n")
    put(root, f"{base}/pids.current", "212\n")
    put(root, f"{base}/cpu.pressure", psi(35.5, 0.0))
    put(root, f"{base}/memory.pressure", psi(12.0, 8.25))
    put(root, f"{base}/io.pressure", psi(0.5, 0.1))
    put(proc, "sys/kernel/osrelease", "6.8.0-1021-azure\n")
    cg = f"0::{SCOPE}/app\n"
    mi = mountinfo(SCOPE)
    py312 = ["/usr/local/bin/python3.12", "/usr/local/lib/libpython3.12.so.1.0",
             "/usr/lib/x86_64-linux-gnu/libc.so.6"]
    conf = ("import multiprocessing\n\nbind = \"0.0.0.0:8000\"\n"
            "workers = multiprocessing.cpu_count() * 2 + 1\ntimeout = 30\n")
    g_argv = ["/usr/local/bin/python3.12", "/usr/local/bin/gunicorn", "-c", "gunicorn.conf.py", "app.wsgi:application"]
    env = {"PATH": "/usr/local/bin:/usr/bin", "HOSTNAME": "web-7c9d", "SECRET_KEY": "not-read-by-obskit"}
    proc_entry(proc, 4101, 0, 1, comm="gunicorn", argv=g_argv, env=env, threads=1, uss_kb=60_000, shared_kb=20_000,
               oom_score=800, exe="/usr/local/bin/python3.12", maps=py312, cgroup=cg,
               cwd_files={"gunicorn.conf.py": conf})
    for i, uss in enumerate((48_000, 52_000, 50_000, 61_000)):
        proc_entry(proc, 4110 + i, 4101, 7 + i, comm="gunicorn", argv=g_argv, env=env, threads=1, uss_kb=uss,
                   shared_kb=15_000, oom_score=1040 + i, exe="/usr/local/bin/python3.12", maps=py312, cgroup=cg)
    c_argv = ["/usr/local/bin/python3.13", "-m", "celery", "-A", "proj", "worker", "--loglevel=INFO"]
    py313 = ["/usr/local/bin/python3.13", "/usr/local/lib/libpython3.13.so.1.0",
             "/usr/local/lib/python3.13/site-packages/numpy.libs/libopenblas64_p-r0-0cf96a72.3.23.dev.so"]
    proc_entry(proc, 4200, 0, 40, comm="celery", argv=c_argv, env=env, threads=3, uss_kb=90_000, shared_kb=30_000,
               oom_score=700, exe="/usr/local/bin/python3.13", maps=py313, cgroup=cg)
    for i in range(2):
        proc_entry(proc, 4201 + i, 4200, 41 + i, comm="celery", argv=c_argv, env=env, threads=65, uss_kb=70_000,
                   shared_kb=25_000, oom_score=900, exe="/usr/local/bin/python3.13", maps=py313, cgroup=cg,
                   utime=5000)
    # A process in another container of the same pod: visible in the PID namespace, not a member.
    proc_entry(proc, 4300, 0, 1, comm="envoy", argv=["/usr/local/bin/envoy", "-c", "/etc/envoy.yaml"], env={},
               threads=8, uss_kb=30_000, shared_kb=1000, oom_score=500, exe="/usr/local/bin/envoy", maps=[],
               cgroup=f"0::{SCOPE.replace('3b1f0c9e', 'aaaaaaaa')}\n")
    for pid in (4101, 4110, 4111, 4112, 4113, 4200, 4201, 4202, 4300):
        put(proc, f"{pid}/mountinfo", mi)


def host_nested() -> None:
    """A systemd host on cgroup v2 only: the service's parent has a smaller cpu.max and memory.max
    than the leaf (the leaf alone would say 3 CPUs and unlimited)."""
    top = os.path.join(HERE, "v2-host-nested")
    shutil.rmtree(top, ignore_errors=True)
    root, proc = os.path.join(top, "root"), os.path.join(top, "proc")
    put(root, "sys/devices/system/cpu/online", "0-7\n")
    v2_level(root, "", cpu_max=None, mem_max=None)
    v2_level(root, "/system.slice", cpu_max="max 100000", mem_max="max")
    v2_level(root, "/system.slice/app.service", cpu_max="150000 100000", mem_max=str(1 << 30),
             mem_high=str(900 << 20))
    v2_level(root, "/system.slice/app.service/worker", cpu_max="300000 100000", mem_max="max")
    svc = "sys/fs/cgroup/system.slice/app.service"
    put(root, f"{svc}/cpu.stat", cpu_stat(5_000_000, 1000, 300, 9_000_000))
    leaf = f"{svc}/worker"
    put(root, f"{leaf}/cpu.stat", cpu_stat(4_000_000, 900, 0, 0))
    put(root, f"{leaf}/cpuset.cpus.effective", "0-7\n")
    put(root, f"{leaf}/memory.current", str(300 << 20) + "\n")
    put(root, f"{leaf}/memory.peak", str(350 << 20) + "\n")
    put(root, f"{leaf}/memory.stat", memory_stat(250 << 20, 50 << 20, 40 << 20))
    put(root, f"{leaf}/memory.events", "low 0\nhigh 12\nmax 0\noom 0\noom_kill 0\n")
    put(root, f"{leaf}/memory.oom.group", "0\n")
    put(root, f"{leaf}/memory.swap.max", "max\n")
    put(root, f"{leaf}/pids.max", "max\n")
    put(root, f"{leaf}/pids.current", "9\n")
    put(root, f"{leaf}/cpu.pressure", psi(2.0, 0.0))
    put(root, f"{leaf}/memory.pressure", psi(0.0, 0.0))
    put(root, f"{leaf}/io.pressure", psi(0.0, 0.0))
    put(proc, "self/cgroup", "0::/system.slice/app.service/worker\n")
    put(proc, "self/mountinfo", mountinfo("/", escaped=False))
    put(proc, "self/status", "Name:\tpython3\nThreads:\t1\nCpus_allowed_list:\t0-7\n")
    put(proc, "sys/kernel/osrelease", "6.1.0-18-amd64\n")


def unlimited() -> None:
    """cgroup v2 with no limit anywhere (cpu.max "max 100000", memory.max "max"), mount point with a space."""
    top = os.path.join(HERE, "v2-unlimited")
    shutil.rmtree(top, ignore_errors=True)
    root, proc = os.path.join(top, "root"), os.path.join(top, "proc")
    put(root, "sys/devices/system/cpu/online", "0-3\n")
    mount = "/sys/fs/cgroup v2"
    for d in ("", "/user.slice", "/user.slice/session-4.scope"):
        v2_level(root, d.replace("", "", 1), cpu_max="max 100000" if d else None, mem_max="max" if d else None)
    # The same levels under the mount point that has a space in its name.
    shutil.move(os.path.join(root, "sys/fs/cgroup"), os.path.join(root, mount.lstrip("/")))
    leaf = f"{mount}/user.slice/session-4.scope"
    put(root, f"{leaf}/cpu.stat", cpu_stat(1_000_000, 0, 0, 0).split("nr_periods")[0])
    put(root, f"{leaf}/memory.current", str(200 << 20) + "\n")
    put(root, f"{leaf}/memory.stat", memory_stat(150 << 20, 50 << 20, 30 << 20))
    put(root, f"{leaf}/memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
    put(proc, "self/cgroup", "0::/user.slice/session-4.scope\n")
    put(proc, "self/mountinfo", mountinfo("/", mount, escaped=True))
    put(proc, "self/status", "Name:\tpython3\nThreads:\t1\nCpus_allowed_list:\t0-3\n")
    put(proc, "pressure/cpu", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 "
        "avg300=0.00 total=0\n")


if __name__ == "__main__":
    k8s_container()
    host_nested()
    unlimited()
    print("built v2-k8s-container, v2-host-nested, v2-unlimited")
