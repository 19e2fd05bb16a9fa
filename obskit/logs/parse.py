"""Per-line format detection and normalisation: JSON (structlog, python-json-logger, ECS,
zap/logrus, GCP, Loki, docker json-file, CLEF), logfmt, Python ``logging`` text formats,
CRI container-log prefixes, and plain text.

A :class:`Parser` belongs to one source: it remembers which format that source used last
(tried first next time) and the last record, so indented traceback lines inherit its level.
Nothing here raises on any input: bad input becomes a ``plain`` record.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from typing import Any

from obskit.logs.model import LogRecord, normalise_level

try:  # optional: 2-3x faster JSON decoding when present (OBSKIT_NO_ORJSON=1 to compare)
    if os.environ.get("OBSKIT_NO_ORJSON"):
        raise ImportError("disabled by OBSKIT_NO_ORJSON")
    import orjson as _orjson

    def _loads(b: bytes | str) -> Any:
        try:
            return _orjson.loads(b)
        except _orjson.JSONDecodeError:
            # orjson rejects integers beyond 64 bits, which the json module reads
            return json.loads(b)

    JSON_BACKEND = "orjson"
    _fast_loads = _orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    _json_loads = json.loads

    def _loads(b: bytes | str) -> Any:
        return _json_loads(b)

    JSON_BACKEND = "json"
    _fast_loads = _loads  # type: ignore[assignment]

_JSONDecodeError: tuple[type[Exception], ...] = (ValueError, TypeError, RecursionError)

# ---------------------------------------------------------------------------------------
# field aliases (first match wins); dotted names are tried flat ("log.level") then nested.
_LEVEL_KEYS = ("level", "lvl", "levelname", "severity", "log.level", "loglevel", "log_level", "severity_text",
               "severityText", "@l", "@level", "level_name", "LEVEL")
_LEVEL_NUM_KEYS = (("levelno", "python"), ("severity_number", "otel"), ("severityNumber", "otel"))
_TIME_KEYS = ("time", "ts", "timestamp", "@timestamp", "asctime", "@t", "datetime", "eventTime", "date",
              "timeUnixNano", "time_unix_nano", "receiveTimestamp", "_time", "TIMESTAMP")
_MSG_KEYS = ("msg", "message", "event", "@m", "body", "textPayload", "MESSAGE", "short_message", "@mt", "Message")
_LOGGER_KEYS = ("logger", "logger_name", "log.logger", "loggerName", "logger.name", "component_name")
_TRACE_KEYS = ("trace_id", "traceId", "trace.id", "otelTraceID", "traceID", "logging.googleapis.com/trace",
               "dd.trace_id", "TraceId", "trace")
_SPAN_KEYS = ("span_id", "spanId", "span.id", "otelSpanID", "spanID", "logging.googleapis.com/spanId", "dd.span_id",
              "SpanId")
_TRACEPARENT_KEYS = ("traceparent", "traceParent", "TRACEPARENT")

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_GCP_TRACE = re.compile(r"(?:^|/)traces/([0-9a-fA-F]+)$")


# ---------------------------------------------------------------------------------------
# time


def parse_time(value: Any) -> float | None:
    """Epoch seconds from epoch s/ms/µs/ns numbers (or numeric strings), ISO 8601 / RFC 3339,
    Python's asctime (``2024-05-14 12:00:00,123``), or GCP's ``{"seconds", "nanos"}``."""
    try:
        if type(value) is str and 19 <= len(value) <= 40 and value[4] == "-":
            return _iso(value.strip())  # the common case first: an ISO 8601 / RFC 3339 string
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            return _epoch(float(value))
        if isinstance(value, dict):
            if "seconds" in value:
                return float(value["seconds"]) + float(value.get("nanos", 0)) / 1e9
            return None
        if not isinstance(value, str) or not value or len(value) > 64:
            return None
        s = value.strip()
        if s[0].isdigit() and ("-" not in s[1:] and ":" not in s):
            return _epoch(float(s))
        return _iso(s)
    except (ValueError, OverflowError, TypeError):
        return None


def _epoch(x: float) -> float | None:
    if x != x or x <= 0:
        return None
    if x > 1e17:
        return x / 1e9
    if x > 1e14:
        return x / 1e6
    if x > 1e11:
        return x / 1e3
    return x


_ISO_CACHE: dict[str, float | None] = {}
_ISO_Z: dict[str, float] = {}  # "2024-05-14T12:00:00" (UTC) -> epoch seconds
_POW10 = [10**i for i in range(10)]
_LOCAL_TZ = _dt.datetime.now().astimezone().tzinfo
_ISO_FAST = re.compile(r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)(?:[.,](\d{1,9}))?(Z|z|[+-]\d\d:?\d\d)?$")


def _iso(s: str) -> float | None:
    if s[-1:] == "Z" and s[19:20] in (".", ","):  # 2024-05-14T12:00:00.123Z: no regex for the usual shape
        frac = s[20:-1]
        sec = _ISO_Z.get(s[:19])
        if sec is not None and frac.isdigit() and len(frac) <= 9 and frac.isascii():
            return sec + int(frac) / _POW10[len(frac)]
    m = _ISO_FAST.match(s)
    if m is None:
        return _iso_slow(s)
    base, frac, tz = m.groups()
    key = base + (tz or "")
    sec = _ISO_CACHE.get(key)
    if sec is None:
        if len(_ISO_CACHE) > 4096:
            _ISO_CACHE.clear()
        sec = _ISO_CACHE[key] = _iso_slow(key)
        if sec is None:
            return None
    if tz == "Z":
        if len(_ISO_Z) > 4096:
            _ISO_Z.clear()
        _ISO_Z[base] = sec
    return sec + (int(frac) / 10 ** len(frac) if frac else 0.0)


def _iso_slow(s: str) -> float | None:
    t = s
    if "," in t:  # python asctime uses a comma before the milliseconds
        t = t.replace(",", ".", 1)
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    # fromisoformat accepts at most 6 fractional digits before 3.11 and is strict about some forms
    frac = re.match(r"^(.*?\.\d{6})\d+(.*)$", t)
    if frac:
        t = frac.group(1) + frac.group(2)
    try:
        d = _dt.datetime.fromisoformat(t)
    except ValueError:
        d2 = _strptime_fallback(t)
        if d2 is None:
            return None
        d = d2
    if d.tzinfo is None:
        d = d.replace(tzinfo=_LOCAL_TZ)
    return d.timestamp()


_FALLBACK_FORMATS = ("%d/%b/%Y:%H:%M:%S %z", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M:%S.%f", "%b %d %H:%M:%S",
                     "%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M:%S.%f %z")


def _strptime_fallback(s: str) -> _dt.datetime | None:
    for fmt in _FALLBACK_FORMATS:
        try:
            d = _dt.datetime.strptime(s, fmt)
        except ValueError:
            continue
        if d.year == 1900:
            d = d.replace(year=_dt.datetime.now().year)
        return d
    return None


# ---------------------------------------------------------------------------------------
# trace ids


def norm_trace_id(v: Any) -> str | None:
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)  # Datadog's decimal ids stay as written (so --trace-id matches what the line says)
    if not isinstance(v, str) or not v:
        return None
    if "/" not in v and "-" not in v:
        return v.strip().lower()
    m = _GCP_TRACE.search(v)
    if m:
        return m.group(1).lower()
    m = _TRACEPARENT.match(v)
    if m:
        return m.group(1)
    return v.strip().lower()


def norm_span_id(v: Any) -> str | None:
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if not isinstance(v, str) or not v:
        return None
    return v.strip().lower()


# ---------------------------------------------------------------------------------------
# JSON


def _role_table() -> dict[str, tuple[str, int]]:
    table: dict[str, tuple[str, int]] = {}
    for role, keys in (("level", _LEVEL_KEYS), ("time", _TIME_KEYS), ("msg", _MSG_KEYS), ("logger", _LOGGER_KEYS),
                       ("trace", _TRACE_KEYS), ("span", _SPAN_KEYS), ("traceparent", _TRACEPARENT_KEYS)):
        for prio, key in enumerate(keys):
            table.setdefault(key, (role, prio))
    for prio, (key, _scale) in enumerate(_LEVEL_NUM_KEYS):
        table.setdefault(key, ("levelnum", prio))
    return table


_ROLES = _role_table()
_LEVEL_NUM_SCALE = dict(_LEVEL_NUM_KEYS)
# ECS / OTel-style nesting: {"log": {"level": ..., "logger": ...}}, {"trace": {"id": ...}}
_NESTED = {"log": (("level", "level"), ("logger", "logger")), "trace": (("id", "trace"),), "span": (("id", "span"),),
           "logger": (("name", "logger"),)}


def _accept(role: str, v: Any) -> bool:
    if v is None or isinstance(v, bool):
        return False
    if role == "level":
        return isinstance(v, (str, int, float))
    if role == "time":
        return not isinstance(v, list)
    if role == "msg":
        return not isinstance(v, (dict, list))
    if role in ("logger", "traceparent"):
        return isinstance(v, str)
    if role in ("trace", "span"):
        return isinstance(v, (str, int))
    return isinstance(v, (int, float, str))  # levelnum


_ACCEPT_TYPES: dict[str, frozenset[type]] = {
    "level": frozenset((str, int, float)),
    "time": frozenset((str, int, float, dict)),
    "msg": frozenset((str, int, float)),
    "logger": frozenset((str,)),
    "traceparent": frozenset((str,)),
    "trace": frozenset((str, int)),
    "span": frozenset((str, int)),
    "levelnum": frozenset((int, float, str)),
}
_PLANS: dict[tuple[str, ...], tuple[tuple[str, str], ...] | None] = {}
_LEVEL_CACHE: dict[str, str | None] = {}
_SLOT_ROLES = ("level", "levelnum", "time", "msg", "logger", "trace", "span", "traceparent")
_SLOTS: dict[tuple[str, ...], tuple[str | None, ...]] = {}
_CHECKS: dict[tuple[str, ...], tuple[tuple[tuple[str, frozenset[type]], ...], tuple[str | None, ...]]] = {}
# keys that change the full scan's outcome by their value ("trace"/"logger" holding a dict are
# refused by the per-record type check instead)
_PLAN_BLOCKERS = frozenset(k for k in _NESTED if k not in _ROLES) | {"name", "line", "labels", "jsonPayload"}


def _plan(rec: dict[str, Any]) -> tuple[tuple[str, str], ...] | None:
    """Which key plays which role for records with exactly these keys (in this order), when that
    follows from the keys alone: the same choice :func:`normalise_json`'s full scan makes when each
    chosen value has an accepted type (checked per record).  None: take the full scan."""
    keys = tuple(rec)
    try:
        return _PLANS[keys]
    except KeyError:
        pass
    plan: tuple[tuple[str, str], ...] | None = None
    if not _PLAN_BLOCKERS.intersection(keys):
        found: dict[str, tuple[int, str]] = {}
        for key in keys:
            r = _ROLES.get(key)
            if r is not None and (r[0] not in found or r[1] < found[r[0]][0]):
                found[r[0]] = (r[1], key)
        # a chosen key whose value is refused would hand the role to another key: only one key per role
        per_role: dict[str, int] = {}
        for key in keys:
            r = _ROLES.get(key)
            if r is not None:
                per_role[r[0]] = per_role.get(r[0], 0) + 1
        if all(n == 1 for n in per_role.values()):
            plan = tuple((role, key) for role, (_p, key) in found.items())
            _SLOTS[keys] = (*(found[r][1] if r in found else None for r in _SLOT_ROLES),
                            _LEVEL_NUM_SCALE.get(found["levelnum"][1]) if "levelnum" in found else None)
            _CHECKS[keys] = (tuple((key, _ACCEPT_TYPES[role]) for role, key in plan), _SLOTS[keys])
    if len(_PLANS) > 512:
        _PLANS.clear()
        _SLOTS.clear()
        _CHECKS.clear()
    _PLANS[keys] = plan
    return plan


def summary_fields(line: bytes) -> tuple[str | None, float | None, str, str | None] | None:
    """(level, time, message, trace id) of a JSON line whose key set has a plan, exactly as
    :class:`Parser` would normalise it, without building the record; None: parse it in full."""
    if line[:1] != b"{":
        return None
    try:
        rec = _fast_loads(line)
    except _JSONDecodeError:
        return None  # (orjson refuses integers past 64 bits: the full path reads them)
    if type(rec) is not dict:
        return None
    keys = tuple(rec)
    entry = _CHECKS.get(keys)
    if entry is None:
        if _plan(rec) is None:
            return None
        entry = _CHECKS[keys]
    checks, slots = entry
    for key, types in checks:
        if type(rec[key]) not in types:
            return None
    lk, nk, tk, mk, _gk, rk, _sk, pk, scale = slots
    level = None
    if lk is not None:
        v = rec[lk]
        if type(v) is str:
            level = _LEVEL_CACHE.get(v)
            if level is None and v not in _LEVEL_CACHE:
                return None  # not seen yet: the full path fills the cache
        else:
            level = normalise_level(v, "bunyan")
    if level is None and nk is not None and type(rec[nk]) is not str:
        level = normalise_level(rec[nk], scale or "python")
    t = None
    if tk is not None:
        v = rec[tk]
        if type(v) is str and v[-1:] == "Z" and v[19:20] in (".", ","):  # _iso's table, without the calls
            frac = v[20:-1]
            t = _ISO_Z.get(v[:19])
            if t is not None and frac.isdigit() and len(frac) <= 9 and frac.isascii():
                t += int(frac) / _POW10[len(frac)]
            else:
                t = parse_time(v)
        else:
            t = parse_time(v)
    msg = "" if mk is None else rec[mk] if type(rec[mk]) is str else str(rec[mk])
    if level != "error" and level != "critical":
        return level, t, msg, None  # the summary keeps trace ids of errors only
    trace = norm_trace_id(rec[rk]) if rk is not None else None
    if pk is not None and trace is None:
        m = _TRACEPARENT.match(rec[pk].strip().lower())
        if m:
            trace = m.group(1)
    return level, t, msg, trace


def _planned(rec: dict[str, Any], slots: tuple[Any, ...], out: LogRecord) -> LogRecord:
    """:func:`normalise_json` for a record whose roles were planned from its keys (values of
    accepted types, no envelopes, no nesting): the same result with less work per line."""
    lk, nk, tk, mk, gk, rk, sk, pk, scale = slots
    pop = rec.pop
    if lk is not None:
        level = pop(lk)
        if type(level) is str:
            lv = _LEVEL_CACHE.get(level)
            if lv is None and level not in _LEVEL_CACHE:
                # a quoted number is a level only in logfmt
                lv = None if level.strip().isdigit() else normalise_level(level, "bunyan")
                if len(_LEVEL_CACHE) < 256:
                    _LEVEL_CACHE[level] = lv
            out.level = lv
        else:
            out.level = normalise_level(level, "bunyan")
    if nk is not None:
        num = pop(nk)
        if out.level is None and type(num) is not str:
            out.level = normalise_level(num, scale)
    if tk is not None:
        t = pop(tk)
        out.time = parse_time(t)
    if mk is not None:
        msg = pop(mk)
        out.message = msg if type(msg) is str else str(msg)
    if gk is not None:
        out.logger = pop(gk)
    if rk is not None:
        out.trace_id = norm_trace_id(pop(rk))
    if sk is not None:
        out.span_id = norm_span_id(pop(sk))
    if pk is not None:
        m = _TRACEPARENT.match(pop(pk).strip().lower())
        if m:
            out.trace_id = out.trace_id or m.group(1)
            out.span_id = out.span_id or m.group(2)
    out.attrs = rec
    return out


def normalise_json(rec: dict[str, Any], source: str, raw: str, depth: int = 0, logfmt: bool = False) -> LogRecord:
    """A record from a decoded JSON object; ``rec`` is consumed (the remainder becomes attrs)."""
    out = LogRecord(source=source, raw=raw, format="json")
    # envelopes whose payload is another log line: docker json-file ("log"), Loki ("line"), GCP jsonPayload
    inner_line: str | None = None
    plan = _plan(rec) if depth == 0 else None
    if depth == 0 and plan is None:  # a plan exists only for key sets without envelope keys
        if isinstance(rec.get("line"), str) and isinstance(rec.get("labels"), dict):  # Loki / logcli jsonl
            inner_line = rec.pop("line")
            for k, v in rec.pop("labels").items():
                rec.setdefault(k, v)
        elif isinstance(rec.get("log"), str) and ("stream" in rec or "time" in rec) and "message" not in rec:
            inner_line = rec.pop("log").rstrip("\n")
        payload = rec.get("jsonPayload")
        if isinstance(payload, dict):
            del rec["jsonPayload"]
            for k, v in payload.items():
                rec.setdefault(k, v)
    values: dict[str, Any] = {}
    nested = False
    if plan is not None:
        # the common case: a key set seen before, every chosen value of an acceptable type
        types = _ACCEPT_TYPES
        for role, key in plan:
            if type(rec[key]) not in types[role]:
                plan = None
                break
        else:
            if not logfmt:
                return _planned(rec, _SLOTS[tuple(rec)], out)
    if plan is not None:
        for role, key in plan:
            values[role] = rec.pop(key)
            if role == "levelnum":
                values["levelnum_scale"] = _LEVEL_NUM_SCALE[key]
    else:
        found: dict[str, tuple[int, str]] = {}
        roles = _ROLES
        for key, value in rec.items():
            r = roles.get(key)
            if r is not None:
                role, prio = r
                if _accept(role, value):
                    cur = found.get(role)
                    if cur is None or prio < cur[0]:
                        found[role] = (prio, key)
                elif isinstance(value, dict) and key in _NESTED:
                    nested = True
            elif key in _NESTED and isinstance(value, dict):
                nested = True
        for role, (_prio, key) in found.items():
            values[role] = rec.pop(key)
            if role == "levelnum":
                values["levelnum_scale"] = _LEVEL_NUM_SCALE[key]
    if nested:
        for outer, inner_keys in _NESTED.items():
            sub = rec.get(outer)
            if not isinstance(sub, dict):
                continue
            for inner, role in inner_keys:
                if role not in values and inner in sub and _accept(role, sub[inner]):
                    values[role] = sub.pop(inner)
            if not sub:
                del rec[outer]
    level = values.get("level")
    if level is not None and not (isinstance(level, str) and level.strip().isdigit() and not logfmt):
        # a numeric "level" is bunyan/pino's scale; python's own number is "levelno".  A quoted number
        # is a level only in logfmt (where every value is text): the prefilter relies on this.
        lv = _LEVEL_CACHE.get(level) if type(level) is str else None
        if lv is None:
            lv = normalise_level(level, "bunyan")
            if type(level) is str and len(_LEVEL_CACHE) < 256:
                _LEVEL_CACHE[level] = lv
        out.level = lv
    num = values.get("levelnum")
    if out.level is None and num is not None and (logfmt or not isinstance(num, str)):
        out.level = normalise_level(num, values["levelnum_scale"])
    t = values.get("time")
    if t is not None:
        out.time = parse_time(t)
    msg = values.get("msg")
    if msg is not None:
        out.message = msg if isinstance(msg, str) else str(msg)
    logger = values.get("logger")
    if logger is None and "name" in rec and isinstance(rec["name"], str) and (
        "levelname" in raw or "funcName" in rec or "lineno" in rec or "module" in rec
    ):
        logger = rec.pop("name")  # python-json-logger's %(name)s
    out.logger = logger
    tid = values.get("trace")
    if tid is not None:
        out.trace_id = norm_trace_id(tid)
    sid = values.get("span")
    if sid is not None:
        out.span_id = norm_span_id(sid)
    tp = values.get("traceparent")
    if isinstance(tp, str):
        m = _TRACEPARENT.match(tp.strip().lower())
        if m:
            out.trace_id = out.trace_id or m.group(1)
            out.span_id = out.span_id or m.group(2)
    out.attrs = rec
    if inner_line is not None:
        sub = parse_text(inner_line, source, depth + 1)
        out.message = sub.message
        out.level = sub.level or out.level
        out.time = sub.time if sub.time is not None else out.time
        out.logger = sub.logger or out.logger
        out.trace_id = sub.trace_id or out.trace_id
        out.span_id = sub.span_id or out.span_id
        if sub.attrs:
            merged = dict(sub.attrs)
            for k, v in rec.items():
                merged.setdefault(k, v)
            out.attrs = merged
    return out


# ---------------------------------------------------------------------------------------
# logfmt

_LOGFMT_PAIR = re.compile(r'([^\s="]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)')
_LOGFMT_LINE = re.compile(r'\s*(?:[^\s="]+=(?:"(?:[^"\\]|\\.)*"|[^\s"]*)\s*)+')
_LOGFMT_ESC = re.compile(r"\\(.)")
_LOGFMT_UNESC = {"n": "\n", "t": "\t", "r": "\r"}


def parse_logfmt_pairs(text: str) -> dict[str, str] | None:
    if "=" not in text or not _LOGFMT_LINE.fullmatch(text):
        return None
    out: dict[str, str] = {}
    for k, v in _LOGFMT_PAIR.findall(text):
        if v.startswith('"'):
            v = _LOGFMT_ESC.sub(lambda m: _LOGFMT_UNESC.get(m.group(1), m.group(1)), v[1:-1])
        out[k] = v
    return out


def normalise_logfmt(pairs: dict[str, Any], source: str, raw: str) -> LogRecord:
    rec: dict[str, Any] = dict(pairs)
    out = normalise_json(rec, source, raw, depth=1, logfmt=True)
    out.format = "logfmt"
    return out


# ---------------------------------------------------------------------------------------
# text formats (python logging, gunicorn, uvicorn, CRI prefixes)

_TS = r"\[?(?P<ts>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?(?: ?(?:Z|[+-]\d\d:?\d\d|UTC))?)\]?"
_LVL_WORDS = r"TRACE|DEBUG|INFO|NOTICE|WARNING|WARN|ERROR|CRITICAL|FATAL|PANIC|trace|debug|info|warning|warn|error|critical|fatal"
_LVL = r"\[?(?P<level>" + _LVL_WORDS + r")\]?"
_PID = r"(?:\[(?P<pid>\d+)\]\s+)?"
_PID2 = r"(?:\[(?P<pid2>\d+)\]\s+)?"
_TEXT_PATTERNS = [
    # 2024-05-14 12:00:00,123 ERROR app.db: msg   |  [ts] [pid] [LEVEL] msg (gunicorn) | ts [LEVEL] name: msg
    re.compile(r"^" + _TS + r"\s+(?:-\s+)?" + _PID + _LVL + r"(?:\s+-)?\s+" + _PID2
               + r"(?:(?P<logger>[A-Za-z_][\w.\-<>]*)(?::| -| in [\w.<>]+:)\s+)?(?P<msg>.*)$", re.S),
    # 2024-05-14 12:00:00,123 - app.db - ERROR - msg
    re.compile(r"^" + _TS + r"\s+-\s+(?P<logger>[\w.\-<>]+)\s+-\s+" + _LVL + r"\s+-\s+(?P<msg>.*)$", re.S),
    # ERROR:app.db:msg  (logging.basicConfig default)
    re.compile(r"^(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL|NOTSET):(?P<logger>[^:\s]*):(?P<msg>.*)$", re.S),
    # INFO:     127.0.0.1:1 - "GET / HTTP/1.1" 200 (uvicorn)
    re.compile(r"^(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL):\s+(?P<msg>.*)$", re.S),
    # logrus' terminal format: ERRO[0042] msg   key=value
    re.compile(r"^(?P<level>ERRO|WARN|INFO|DEBU|TRAC|FATA|PANI)\[[^\]]*\]\s+(?P<msg>.*)$", re.S),
    # [2024-05-14 12:00:00] LEVEL msg  /  2024-05-14T12:00:00Z LEVEL msg handled above; LEVEL ts msg:
    re.compile(r"^" + _LVL + r"\s+" + _TS + r"\s+(?P<msg>.*)$", re.S),
]
# kubelet CRI files: "<RFC3339Nano> stdout F <line>"; `kubectl logs --prefix`: "[pod/x/c] <line>";
# `kubectl logs --timestamps`: "<RFC3339Nano> <line>"
_CRI = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\S+) (?P<stream>stdout|stderr) (?P<tag>[FP]) (?P<rest>.*)$", re.S)
_K8S_PREFIX = re.compile(r"^(?:\[(?P<prefix>[^\]\s]+/[^\]\s]+)\] )?(?:(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*) )?", re.S)
_CONTINUATION = re.compile(r"^(?:[ \t]|Traceback \(most recent call last\):|During handling of|The above exception"
                           r"|[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning)(?::|$))")


def parse_text(text: str, source: str, depth: int = 0) -> LogRecord:
    """Parse one decoded line (without its newline) into a record; never raises."""
    try:
        return _parse_text(text, source, depth)
    except (RecursionError, ValueError, TypeError, OverflowError, AttributeError, KeyError):
        return LogRecord(source=source, raw=text, format="plain", message=text)


def _parse_text(text: str, source: str, depth: int) -> LogRecord:
    s = text.lstrip() if depth else text
    first = s[:1]
    if first == "{":
        try:
            obj = _loads(s)
        except _JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            return normalise_json(obj, source, text, depth)
    if depth == 0 and first and (first.isdigit() or first == "["):
        m = _CRI.match(s)
        if m:
            inner = parse_text(m.group("rest"), source, 1)
            inner.raw = text
            if inner.time is None:
                inner.time = parse_time(m.group("ts"))
            inner.attrs.setdefault("stream", m.group("stream"))
            return inner
        m = _K8S_PREFIX.match(s)
        if m and m.end() > 0 and m.end() < len(s) and s[m.end()] in "{[" and (m.group("prefix") or m.group("ts")):
            inner = parse_text(s[m.end():], source, 1)
            if inner.format != "plain":
                inner.raw = text
                if inner.time is None and m.group("ts"):
                    inner.time = parse_time(m.group("ts"))
                if m.group("prefix"):
                    inner.attrs.setdefault("k8s", m.group("prefix"))
                return inner
    if first and (first.isalnum() or first == "["):
        for pat in _TEXT_PATTERNS:
            m = pat.match(s)
            if m:
                g = m.groupdict()
                rec = LogRecord(source=source, raw=text, format="python",
                                level=normalise_level(g.get("level")), message=g.get("msg") or "",
                                logger=g.get("logger") or None)
                if g.get("ts"):
                    rec.time = parse_time(g["ts"].replace(" UTC", "Z"))
                pid = g.get("pid") or g.get("pid2")
                if pid:
                    rec.attrs["pid"] = int(pid)
                _text_trace(rec)
                return rec
        if "=" in s:
            pairs = parse_logfmt_pairs(s)
            if pairs is not None and (len(pairs) >= 2 or pairs.keys() & {"level", "msg", "lvl", "message"}):
                return normalise_logfmt(pairs, source, text)
    return LogRecord(source=source, raw=text, format="plain", message=text)


_TRACE_IN_TEXT = re.compile(r"\btrace(?:_id|Id|ID|\.id)?[=:]\s*\"?([0-9a-fA-F]{32})\b")
_SPAN_IN_TEXT = re.compile(r"\bspan(?:_id|Id|ID|\.id)?[=:]\s*\"?([0-9a-fA-F]{16})\b")


def _text_trace(rec: LogRecord) -> None:
    msg = rec.message
    if "trace" in msg:
        m = _TRACE_IN_TEXT.search(msg)
        if m:
            rec.trace_id = m.group(1).lower()
        m = _SPAN_IN_TEXT.search(msg)
        if m:
            rec.span_id = m.group(1).lower()


# ---------------------------------------------------------------------------------------


class Parser:
    """Parses the lines of one source; keeps the state a line needs (traceback continuation)."""

    __slots__ = ("formats", "last", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.last: LogRecord | None = None
        self.formats: dict[str, int] = {}

    def parse(self, line: bytes, capped: bool = False) -> tuple[LogRecord, bool]:
        """(record, invalid_utf8) for one line without its newline."""
        bad = False
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            text = line.decode("utf-8", "replace")
            bad = True
        if text.endswith("\r"):
            text = text[:-1]
        rec = parse_text(text, self.source)
        if rec.format == "plain" and self.last is not None and self.last.format == "python" and text and (
            _CONTINUATION.match(text)
        ):
            prev = self.last
            rec.format = "continuation"
            rec.level, rec.time, rec.logger = prev.level, prev.time, prev.logger
            rec.trace_id, rec.span_id = prev.trace_id, prev.span_id
        else:
            self.last = rec if rec.format != "plain" else None
        if capped:
            rec.capped = True
        self.formats[rec.format] = self.formats.get(rec.format, 0) + 1
        return rec, bad

    def follows_python_record(self) -> bool:
        return self.last is not None and self.last.format == "python"
