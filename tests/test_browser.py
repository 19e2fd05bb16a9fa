"""obskit's web pages in a real browser: Debian's headless Chromium driven by selenium.

The flame graph, the differential flame graph and the memory report load with no console
error under their Content-Security-Policy; on the flame graphs search highlights frames, a
click zooms and the thread filter filters.  A screenshot of each page is kept under the
test's tmp_path (its path is recorded as a property in pytest's report).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from obskit.profile.html import render_diff_html, render_html
from obskit.profile.model import Frame, Profile

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
MATCH_RGB = (206, 70, 240)  # the search-match colour of flamegraph.js

pytestmark = pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                                reason="chromium or chromedriver missing (Debian packages chromium, chromium-driver)")


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager must never download a browser or driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--force-device-scale-factor=1", "--force-color-profile=srgb"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(60)
    try:
        yield d
    finally:
        d.quit()


def _open(driver: Any, page: bytes | str, path: Path) -> None:
    path.write_bytes(page if isinstance(page, bytes) else page.encode())
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(path.as_uri())
    deadline = time.monotonic() + 30
    while driver.execute_script("return document.readyState") != "complete":
        assert time.monotonic() < deadline, "page never finished loading"
        time.sleep(0.1)


def _console_errors(driver: Any) -> list[str]:
    """Console errors (a CSP violation is one); the tests' own canvas readback warnings are not."""
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" or (e["level"] == "WARNING" and "willReadFrequently" not in e["message"])]


def _keep_screenshot(driver: Any, path: Path, record_property: Any) -> None:
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 5000  # a real picture, not an empty canvas
    record_property("screenshot", str(path))
    out = os.environ.get("OBSKIT_TEST_ARTIFACTS")
    if out:
        os.makedirs(out, exist_ok=True)
        shutil.copy(path, os.path.join(out, path.name))


def _match_pixels(driver: Any) -> int:
    """Pixels of the canvas painted in the search-match colour."""
    return int(driver.execute_script("""
        const c = document.getElementById('flame'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] === arguments[0] && d[i+1] === arguments[1] && d[i+2] === arguments[2]) n++;
        return n;""", *MATCH_RGB))


def _status(driver: Any) -> str:
    return str(driver.find_element("id", "status").text)


def _click_row(driver: Any, depth: int, at: float = 0.5) -> None:
    """Click the canvas at ``at`` of its width on row ``depth`` (18 px rows)."""
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = driver.find_element("id", "flame")
    w = canvas.size["width"]
    ActionChains(driver).move_to_element_with_offset(canvas, int(w * at - w / 2),
                                                      int(depth * 18 + 9 - canvas.size["height"] / 2)).click().perform()


def _profile() -> Profile:
    prof = Profile()
    prof.metadata.requested_rate, prof.metadata.duration_s = 100, 5.0
    prof.ensure_process(100, cmdline="python app.py")
    prof.ensure_thread(100, 1, "MainThread")
    prof.ensure_thread(100, 2, "worker <b>x</b>")
    main, handle = Frame("main", "/srv/app/main.py", 5), Frame("handle", "/srv/app/views.py", 40)
    hot, sleep = Frame("compute_checksum", "/srv/app/hot.py", 12), Frame("wait_for_job", "/srv/app/jobs.py", 9)
    prof.add_stack(100, 1, [main, handle, hot], 300)
    prof.add_stack(100, 1, [main, handle], 50)
    prof.add_stack(100, 2, [main, sleep], 150)
    return prof


def test_flame_graph_in_chromium(driver: Any, tmp_path: Path, record_property: Any) -> None:
    from selenium.webdriver.support.ui import Select

    _open(driver, render_html(_profile()), tmp_path / "flame.html")
    assert _console_errors(driver) == []
    assert driver.title.startswith("obskit flame graph")
    assert "500 samples in view" in _status(driver)
    top = driver.find_element("id", "top").text
    assert "compute_checksum" in top and "wait_for_job" in top
    # Search: the matching frames are painted in the match colour, and the share is reported.
    assert _match_pixels(driver) == 0
    driver.find_element("id", "search").send_keys("checksum")
    assert driver.find_element("id", "matched").text == "matched 60.0% (300 samples)"
    assert _match_pixels(driver) > 1000
    _keep_screenshot(driver, tmp_path / "flame-search.png", record_property)
    # A click on the second row ("main" spans the whole width) zooms on it.
    _click_row(driver, 1)
    assert "zoomed on main" in _status(driver)
    driver.find_element("id", "reset").click()
    assert "zoomed" not in _status(driver)
    # The thread filter: only the worker's samples remain, in the graph and the table.
    threads = Select(driver.find_element("id", "thread"))
    labels = [o.text for o in threads.options]
    assert any("worker <b>x</b>" in t for t in labels)  # a thread name shown as text, never as markup
    threads.select_by_index(next(i for i, t in enumerate(labels) if "worker" in t))
    assert "150 samples in view" in _status(driver)
    top = driver.find_element("id", "top").text
    assert "wait_for_job" in top and "compute_checksum" not in top
    assert _match_pixels(driver) == 0  # the match is in the other thread
    _keep_screenshot(driver, tmp_path / "flame-thread.png", record_property)
    assert _console_errors(driver) == []


def test_pruned_flame_graph_in_chromium(driver: Any, tmp_path: Path, record_property: Any) -> None:
    prof = _profile()
    for i in range(3000):
        prof.add_stack(100, 1, [Frame("main", "/srv/app/main.py", 5), Frame(f"tiny_{i}", "/srv/app/t.py", i)], 1)
    _open(driver, render_html(prof, min_share=0.001), tmp_path / "pruned.html")
    assert _console_errors(driver) == []
    warnings = driver.find_element("id", "warnings").text
    assert "85.7% of samples end in an [other] frame (frames under 4 samples" in warnings
    _keep_screenshot(driver, tmp_path / "flame-pruned.png", record_property)


def test_diff_page_in_chromium(driver: Any, tmp_path: Path, record_property: Any) -> None:
    base, new = _profile(), _profile()
    new.add_stack(100, 1, [Frame("main", "/srv/app/main.py", 5), Frame("handle", "/srv/app/views.py", 40),
                           Frame("compute_checksum", "/srv/app/hot.py", 12)], 500)
    _open(driver, render_diff_html(base, new), tmp_path / "diff.html")
    assert _console_errors(driver) == []
    assert driver.title.startswith("obskit diff")
    assert "Grew most" in driver.find_element("id", "changes").text
    assert driver.find_element("id", "colour").is_displayed()
    driver.find_element("id", "search").send_keys("checksum")
    assert driver.find_element("id", "matched").text.startswith("matched 80.0%")
    assert _match_pixels(driver) > 1000
    search = driver.find_element("id", "search")
    search.send_keys(*["\b"] * len("checksum"))  # typed away, as a user would
    assert driver.find_element("id", "matched").text == "" and _match_pixels(driver) == 0
    _click_row(driver, 2, at=0.3)  # "handle" covers the left 87.5 %
    assert "zoomed on handle" in _status(driver)
    _keep_screenshot(driver, tmp_path / "diff.png", record_property)
    assert _console_errors(driver) == []


def test_memory_report_in_chromium(driver: Any, tmp_path: Path, record_property: Any) -> None:
    from obskit.mem.collect import Series, Watch, snapshot
    from obskit.mem.html import render_html as render_mem

    report = snapshot(os.getpid())
    s = Series(os.getpid(), t=[0.0, 1.0, 2.0, 3.0], rss=[100 << 20, 110 << 20, 121 << 20, 133 << 20])
    report.watch = Watch(1.0, 3.0, False, [s], None, "growing")
    report.notes.append("a note with <script>alert(1)</script>")
    _open(driver, render_mem(report), tmp_path / "mem.html")
    assert _console_errors(driver) == []
    assert f"Memory of pid {os.getpid()}" in driver.find_element("tag name", "h1").text
    assert driver.find_elements("css selector", "svg polyline")
    assert "<script>alert(1)</script>" in driver.find_element("tag name", "body").text  # shown, not run
    _keep_screenshot(driver, tmp_path / "mem.png", record_property)


def test_a_csp_violation_is_seen(driver: Any, tmp_path: Path) -> None:
    # The console check must be able to fail: a script the policy does not allow is reported.
    page = render_html(_profile()).decode().replace("script-src 'sha256-", "script-src 'sha256-x")
    _open(driver, page, tmp_path / "bad.html")
    errors = _console_errors(driver)
    assert errors and "Content Security Policy" in " ".join(errors)
