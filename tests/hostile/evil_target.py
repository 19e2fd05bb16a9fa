"""A target whose every name is hostile: function, file, thread names and argv carry terminal
escapes and bidi overrides.  Prints ``ready`` once its threads run; allocates and collects
cycles so gc, mem and tracemalloc have something to show."""

import gc
import threading
import time

EVIL = "evil\x1b]0;pwned\x07\x1b[31m\u202eRTL\x9b2J"

SRC = """
def work(n):
    junk = []
    for i in range(n):
        node = {"i": i}
        node["me"] = node
        junk.append(node)
    return len(junk)

def loop(stop):
    while not stop.is_set():
        work(2000)
        time.sleep(0.001)
"""

ns = {"time": time}
exec(compile(SRC, f"/srv/{EVIL}.py", "exec"), ns)
for name in ("work", "loop"):
    f = ns[name]
    f.__code__ = f.__code__.replace(co_name=f"{name}_{EVIL}", co_qualname=f"{name}_{EVIL}")

stop = threading.Event()
threads = [threading.Thread(target=ns["loop"], args=(stop,), name=f"thread-{EVIL}", daemon=True) for _ in range(2)]
for t in threads:
    t.start()
gc.collect()
print("ready", flush=True)
try:
    while True:
        ns["work"](500)
        time.sleep(0.01)
except KeyboardInterrupt:
    pass
