"""Capture a real cgroup v1 (hybrid) tree from this host into tests/data/quota/v1-hybrid-nested/.

Run as root on a host with writable cgroup v1: creates obskit-cap/leaf under cpu, cpuacct,
memory and pids (parent 0.5 CPU and 256 MiB; leaf with no CPU quota -- v1 refuses a child quota above
its parent's -- and 1 GiB: the parent is tighter),
puts a `sleep` in the leaf, burns a little CPU so cpu.stat has throttling, copies the files
obskit reads (verbatim), then removes everything it created.
"""

import os
import shutil
import subprocess
import sys
import time

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "v1-hybrid-nested")
CG = "/sys/fs/cgroup"
CTRLS = ("cpu", "cpuacct", "memory", "pids")


def w(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def copy(src: str, dst_root: str) -> None:
    dst = os.path.join(dst_root, src.lstrip("/"))
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        with open(src, "rb") as f:
            data = f.read()
    except OSError:
        return
    with open(dst, "wb") as f:
        f.write(data)


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    for c in CTRLS:
        os.makedirs(f"{CG}/{c}/obskit-cap/leaf", exist_ok=True)
    w(f"{CG}/cpu/obskit-cap/cpu.cfs_quota_us", "50000")
    w(f"{CG}/memory/obskit-cap/memory.limit_in_bytes", str(256 << 20))
    w(f"{CG}/memory/obskit-cap/leaf/memory.limit_in_bytes", str(1 << 30))
    w(f"{CG}/pids/obskit-cap/leaf/pids.max", "100")

    def enter() -> None:
        for c in CTRLS:
            w(f"{CG}/{c}/obskit-cap/leaf/cgroup.procs", str(os.getpid()))

    burn = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<1.5: pass"],
                            preexec_fn=enter)
    burn.wait()
    sleeper = subprocess.Popen(["sleep", "60"], preexec_fn=enter)
    time.sleep(0.2)
    try:
        proc = f"/proc/{sleeper.pid}"
        for name in ("cgroup", "mountinfo", "status"):
            dst = os.path.join(OUT, "proc/self", name)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(f"{proc}/{name}", dst)
        for name in ("pressure/cpu", "pressure/memory", "pressure/io", "sys/kernel/osrelease"):
            dst = os.path.join(OUT, "proc", name)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(f"/proc/{name}", dst)
        root = os.path.join(OUT, "root")
        copy("/sys/devices/system/cpu/online", root)
        for level in ("", "/obskit-cap", "/obskit-cap/leaf"):
            for f in ("cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.shares", "cpu.stat"):
                copy(f"{CG}/cpu{level}/{f}", root)
            copy(f"{CG}/cpuacct{level}/cpuacct.usage", root)
            for f in ("memory.limit_in_bytes", "memory.usage_in_bytes", "memory.max_usage_in_bytes",
                      "memory.oom_control", "memory.failcnt", "memory.memsw.limit_in_bytes", "memory.stat"):
                copy(f"{CG}/memory{level}/{f}", root)
            for f in ("pids.max", "pids.current"):
                copy(f"{CG}/pids{level}/{f}", root)
        copy(f"{CG}/cpuset/cpuset.effective_cpus", root)
        for f in ("cgroup.controllers", "cpu.pressure", "memory.pressure", "io.pressure", "cpu.stat"):
            copy(f"{CG}/unified/{f}", root)
    finally:
        sleeper.kill()
        sleeper.wait()
        time.sleep(0.2)
        for c in CTRLS:
            for d in (f"{CG}/{c}/obskit-cap/leaf", f"{CG}/{c}/obskit-cap"):
                os.rmdir(d)
    print("captured into", OUT)


if __name__ == "__main__":
    main()
