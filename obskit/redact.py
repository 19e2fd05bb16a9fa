"""The one redaction module: secrets are removed here, for every place obskit shows or stores
what other programs were given (span attributes, `trace status`, the error log, snapshots of
environments and command lines).

Rules (docs/security.md lists them):

- URLs with userinfo: the password goes (``postgres://app:***@db``); a lone userinfo that is
  not a plain user name (``https://TOKEN@host``) goes whole (``https://***@host``);
  ``redis://:PASS@h`` becomes ``redis://:***@h``.
- ``Authorization``/``Proxy-Authorization``/``Cookie``/``X-Api-Key`` header values and any
  ``Bearer``/``Basic`` credential in free text.
- Arguments: the value of a flag whose name says password/secret/token/key/auth/credential/
  signature (``--password X``, ``--api-key=X``, ``--private-key=…``, ``--sig X``);
  ``-u user:PASS`` keeps the user; ``NAME=VALUE`` with a secret-looking name.
- Ambiguous short flags (``-p``/``-P``: MySQL's password, but also a port, a pid file or
  Celery's pool) are redacted by the value's shape only: never a number, a path or a plain
  lower-case word (``-p 8080``, ``-p /run/app.pid``, ``-P prefork`` stay).
- Environment variables: the value of any variable whose name looks secret, and userinfo in
  URL values of every other variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

REDACTED = "***"

_SECRET_WORD = (
    r"(?:pass(?:word|wd|phrase)?|secret|token|api[-_]?key|access[-_]?key|private[-_]?key|"
    r"auth(?:orization)?|credentials?|pwd|sig(?:nature)?|session[-_]?key|cookie|dsn)"
)
_SECRET_NAME = re.compile(rf"(?:^|[-_.]){_SECRET_WORD}(?:$|[-_.])|{_SECRET_WORD}$|^{_SECRET_WORD}", re.IGNORECASE)
_SECRET_FLAG = re.compile(rf"^--?[\w-]*{_SECRET_WORD}[\w-]*$", re.IGNORECASE)
_SECRET_ASSIGN = re.compile(rf"^(-{{0,2}}[\w.-]*{_SECRET_WORD}[\w.-]*[=:])(.+)$", re.IGNORECASE | re.DOTALL)
_HEADER = re.compile(r"^\s*((?:proxy-)?authorization|x-api-key|api-key|cookie|set-cookie|x-auth-token)\s*:\s*(.+)$",
                     re.IGNORECASE | re.DOTALL)
_SCHEME_CRED = re.compile(r"\b(Bearer|Basic|Token|Digest)\s+[A-Za-z0-9._~+/=-]{4,}", re.IGNORECASE)
# scheme://userinfo@host — userinfo may be "user", "user:pass", ":pass"
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@\s:]*)(?::(?P<pw>[^/@\s]*))?@")
_USER_FLAGS = {"-u", "--user", "--username-password", "--proxy-user", "-U"}
_AMBIGUOUS_FLAGS = {"-p", "-P"}
_PLAIN_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


def _url_sub(m: re.Match[str]) -> str:
    user, pw = m.group("user"), m.group("pw")
    if pw is not None:
        return f"{m.group('scheme')}{user}:{REDACTED}@"
    if _PLAIN_USER.match(user):  # git@github.com-style plain user names stay
        return m.group(0)
    return f"{m.group('scheme')}{REDACTED}@"


def redact_url(url: str) -> str:
    """``url`` without the password (or token) in its userinfo."""
    return _URL_USERINFO.sub(_url_sub, url)


def redact_text(text: str) -> str:
    """Free text (an argument, an environment value, a log line): URL userinfo, auth headers and
    ``Bearer``/``Basic`` credentials removed."""
    m = _HEADER.match(text)
    if m:
        return f"{text[: m.start(2)]}{REDACTED}"
    out = redact_url(text)
    return _SCHEME_CRED.sub(lambda mm: f"{mm.group(1)} {REDACTED}", out)


def redact_header_value(value: str) -> str:
    """A header value for display: at most its first 4 characters (``Bearer tok-…``)."""
    v = value.strip()
    if v.lower().startswith(("bearer ", "basic ")):
        scheme, _, rest = v.partition(" ")
        return f"{scheme} {rest[:4]}…" if len(rest) > 4 else f"{scheme} {REDACTED}"
    return f"{v[:4]}…" if len(v) > 8 else REDACTED


def looks_secret_value(value: str) -> bool:
    """True when a value after an ambiguous flag (``-p``/``-P``) has a password's shape: not a
    number, not a path or file name, not a plain lower-case word."""
    v = value.strip()
    if not v or v.isdigit() or "/" in v or re.fullmatch(r"[\w-]+\.[A-Za-z0-9]{1,5}", v):
        return False
    if re.fullmatch(r"[a-z][a-z_-]*", v):  # prefork, solo, threads, gevent, pidfile
        return False
    return True


def is_secret_name(name: str) -> bool:
    """True for environment variable or option names that hold secrets (``DB_PASSWORD``,
    ``GITHUB_TOKEN``, ``AWS_SECRET_ACCESS_KEY``, ``api-key``)."""
    return bool(_SECRET_NAME.search(name))


def redact_argv(argv: list[str]) -> list[str]:
    """Command arguments safe to record (the program itself still gets the real ones)."""
    out: list[str] = []
    hide_next: str | None = None
    for arg in argv:
        if hide_next is not None:
            mode, hide_next = hide_next, None
            if mode == "user" and "://" in arg:
                out.append(redact_text(arg))
                continue
            if mode == "user":
                user, sep, _pw = arg.partition(":")
                out.append(f"{user}:{REDACTED}" if sep else arg)
                continue
            if mode == "ambiguous" and not looks_secret_value(arg):
                out.append(arg)
                continue
            out.append(REDACTED)
            continue
        if len(arg) > 2 and arg[:2] in _AMBIGUOUS_FLAGS and not arg.startswith("--") and looks_secret_value(arg[2:]):
            out.append(arg[:2] + REDACTED)  # mysql -pPASS
            continue
        if _SECRET_FLAG.match(arg):
            out.append(arg)
            hide_next = "always"
            continue
        if arg in _USER_FLAGS:
            out.append(arg)
            hide_next = "user"
            continue
        if arg in _AMBIGUOUS_FLAGS:
            out.append(arg)
            hide_next = "ambiguous"
            continue
        m = _HEADER.match(arg)
        if m:
            out.append(f"{m.group(1)}: {REDACTED}")
            continue
        m = _SECRET_ASSIGN.match(arg)
        if m:
            out.append(m.group(1) + REDACTED)
            continue
        out.append(redact_text(arg))
    return out


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """An environment safe to bundle: secret-looking variables hidden, URL passwords removed."""
    return {k: (REDACTED if is_secret_name(k) else redact_text(v)) for k, v in env.items()}
