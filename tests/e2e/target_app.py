"""The e2e target: a WSGI app whose gunicorn workers each burn CPU in one named function."""

import threading


def burn_cpu_hot() -> None:
    x = 0
    while True:
        for i in range(10000):
            x += i * i


def app(environ, start_response):  # type: ignore[no-untyped-def]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def post_fork(server, worker):  # type: ignore[no-untyped-def]  # gunicorn hook: once per worker
    threading.Thread(target=burn_cpu_hot, name="burner", daemon=True).start()
