"""pprof's profile.proto, encoded and decoded by hand (no generated code, no protobuf dependency).

The encoder writes what ``go tool pprof``, Pyroscope and Grafana read: sample types
``samples/count`` and ``cpu/nanoseconds`` (count × period), a string table starting with
"", deduplicated functions (name, filename, start_line) and locations (one line each),
string labels ``pid``, ``tid`` and ``thread_name`` on every sample, period, duration and
start time; gzip-compressed.  Field numbers follow google/pprof proto/profile.proto.
"""

from __future__ import annotations

import gzip
import re
import time
from collections.abc import Iterator

from obskit.errors import InputError
from obskit.profile.model import Frame, Profile

# profile.proto field numbers
_P_SAMPLE_TYPE, _P_SAMPLE, _P_MAPPING, _P_LOCATION, _P_FUNCTION, _P_STRING = 1, 2, 3, 4, 5, 6
_P_TIME, _P_DURATION, _P_PERIOD_TYPE, _P_PERIOD, _P_COMMENT, _P_DEFAULT_TYPE = 9, 10, 11, 12, 13, 14

_VARINT, _LEN = 0, 2


def _varint(n: int) -> bytes:
    if n < 0:
        n &= (1 << 64) - 1  # int64 negatives are ten-byte two's complement
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _vfield(field: int, n: int) -> bytes:
    return _key(field, _VARINT) + _varint(n) if n else b""


def _lfield(field: int, payload: bytes) -> bytes:
    return _key(field, _LEN) + _varint(len(payload)) + payload


def _packed(field: int, values: list[int]) -> bytes:
    return _lfield(field, b"".join(_varint(v) for v in values)) if values else b""


class _Strings:
    def __init__(self) -> None:
        self.table: list[str] = [""]
        self.index: dict[str, int] = {"": 0}

    def __call__(self, s: str) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.table)
            self.table.append(s)
        return i


def display_name(name: str, file: str) -> str:
    """The name pprof shows: it strips ``<...>`` as C++ template arguments unless the name is qualified.

    ``<module>`` would print as nothing, so such names get the module as a prefix
    (``app.<module>``); the exact name stays in ``system_name``.
    """
    if "<" not in name or "." in name.split("<", 1)[0]:
        return name
    stem = file.rsplit("/", 1)[-1]
    stem = stem[:-3] if stem.endswith(".py") else stem
    stem = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in stem.strip("<>")) or "python"
    return f"{stem}.{name}"


def encode_pprof(profile: Profile, *, compress: bool = True) -> bytes:
    """``profile`` as a (gzipped) pprof profile.proto message."""
    st = _Strings()
    # count x period adds up to the sampled time (`go tool pprof` prints it as "Total samples").
    period = max(1, round(profile.sample_period() * 1e9))
    out = bytearray()
    out += _lfield(_P_SAMPLE_TYPE, _vfield(1, st("samples")) + _vfield(2, st("count")))
    out += _lfield(_P_SAMPLE_TYPE, _vfield(1, st("cpu")) + _vfield(2, st("nanoseconds")))

    func_ids: dict[tuple[str, str], int] = {}
    func_start: dict[tuple[str, str], int] = {}
    for f in profile.frames:
        k = (f.name, f.file)
        if k not in func_ids:
            func_ids[k] = len(func_ids) + 1
            func_start[k] = f.line
        elif f.line and (not func_start[k] or f.line < func_start[k]):
            # No def line in a sample: the smallest line seen is the best stand-in.
            func_start[k] = f.line
    loc_ids: dict[tuple[int, int], int] = {}
    frame_loc: list[int] = []
    for f in profile.frames:
        lk = (func_ids[(f.name, f.file)], f.line)
        if lk not in loc_ids:
            loc_ids[lk] = len(loc_ids) + 1
        frame_loc.append(loc_ids[lk])

    loc_bytes = [_varint(i) for i in frame_loc]
    k_pid, k_tid, k_tname = st("pid"), st("tid"), st("thread_name")
    labels_of: dict[tuple[int, int], bytes] = {}
    for s in profile.samples:
        key = (s.pid, s.tid)
        labels = labels_of.get(key)
        if labels is None:
            labels = (_lfield(3, _vfield(1, k_pid) + _vfield(2, st(str(s.pid))))
                      + _lfield(3, _vfield(1, k_tid) + _vfield(2, st(str(s.tid))))
                      + _lfield(3, _vfield(1, k_tname) + _vfield(2, st(profile.thread_name(s.pid, s.tid)))))
            labels_of[key] = labels
        locs = b"".join([loc_bytes[i] for i in reversed(s.frames)])  # pprof: leaf first
        body = ((_lfield(1, locs) if locs else b"") + _packed(2, [s.count, s.count * period]) + labels)
        out += _lfield(_P_SAMPLE, body)

    # One mapping that says "already symbolized", so pprof never tries to find binaries.
    mapping = (_vfield(1, 1) + _vfield(5, st("python")) + _vfield(7, 1) + _vfield(8, 1) + _vfield(9, 1))
    out += _lfield(_P_MAPPING, mapping)
    for (fid, line), lid in loc_ids.items():
        line_msg = _vfield(1, fid) + _vfield(2, line)
        out += _lfield(_P_LOCATION, _vfield(1, lid) + _vfield(2, 1) + _lfield(4, line_msg))
    for (name, file), fid in func_ids.items():
        out += _lfield(_P_FUNCTION, _vfield(1, fid) + _vfield(2, st(display_name(name, file))) + _vfield(3, st(name))
                       + _vfield(4, st(file))
                       + _vfield(5, func_start[(name, file)]))

    m = profile.metadata
    start = m.start_time if m.start_time else time.time()
    tail = bytearray()
    tail += _vfield(_P_TIME, int(start * 1e9))
    if m.duration_s:
        tail += _vfield(_P_DURATION, int(m.duration_s * 1e9))
    tail += _lfield(_P_PERIOD_TYPE, _vfield(1, st("cpu")) + _vfield(2, st("nanoseconds")))
    tail += _vfield(_P_PERIOD, period)
    comments = [f"obskit {m.obskit_version}".strip()]
    if m.target_cmdline:
        comments.append(f"target: {m.target_cmdline}")
    tail += _packed(_P_COMMENT, [st(c) for c in comments])
    for text in st.table:
        out += _lfield(_P_STRING, text.encode("utf-8"))
    out += tail
    return gzip.compress(bytes(out), compresslevel=6, mtime=0) if compress else bytes(out)


# -- decoding ---------------------------------------------------------------------


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise ValueError("field number 0")
        if wire == 0:
            v, pos = _read_varint(buf, pos)
            yield field, wire, v
        elif wire == 2:
            n, pos = _read_varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("truncated field")
            yield field, wire, buf[pos:pos + n]
            pos += n
        elif wire == 1:
            yield field, wire, int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wire == 5:
            yield field, wire, int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


_VARINT_RE = re.compile(rb"[\x80-\xff]*[\x00-\x7f]")


def _ints(wire: int, v: int | bytes, memo: dict[bytes, int]) -> list[int]:
    """A repeated integer field, packed or not (``memo``: varint bytes already decoded)."""
    if isinstance(v, int):
        return [v]
    # Split the packed run in C, decode each distinct varint once: location ids repeat across samples.
    chunks = _VARINT_RE.findall(v)
    if sum(map(len, chunks)) != len(v):
        raise ValueError("truncated packed varints")
    out = []
    for c in chunks:
        n = memo.get(c)
        if n is None:
            n = memo[c] = _read_varint(c, 0)[0]
        out.append(n)
    return out


def _signed(n: int) -> int:
    return n - (1 << 64) if n >= 1 << 63 else n


def decode_pprof(data: bytes) -> Profile:
    """An uncompressed profile.proto message as a Profile (first sample type is the count)."""
    try:
        return _decode(data)
    except (ValueError, IndexError, KeyError, UnicodeDecodeError) as e:
        raise InputError(f"not a readable pprof profile ({e})", "expected a profile.proto message, gzipped or not") \
            from None


def _decode(data: bytes) -> Profile:
    strings: list[str] = []
    samples: list[tuple[list[int], list[int], list[tuple[int, int]]]] = []
    locations: dict[int, list[tuple[int, int]]] = {}
    functions: dict[int, tuple[int, int]] = {}
    sample_types: list[tuple[int, int]] = []
    period = duration = time_nanos = 0
    memo: dict[bytes, int] = {}
    for field, _wire, v in _fields(data):
        if field == _P_STRING and isinstance(v, bytes):
            strings.append(v.decode("utf-8"))
        elif field == _P_SAMPLE_TYPE and isinstance(v, bytes):
            d = {f: x for f, _, x in _fields(v)}
            sample_types.append((int(d.get(1, 0)), int(d.get(2, 0))))  # type: ignore[arg-type]
        elif field == _P_SAMPLE and isinstance(v, bytes):
            locs: list[int] = []
            vals: list[int] = []
            labels: list[tuple[int, int]] = []
            for f2, w2, x in _fields(v):
                if f2 == 1:
                    locs += _ints(w2, x, memo)
                elif f2 == 2:
                    vals += [_signed(n) for n in _ints(w2, x, memo)]
                elif f2 == 3 and isinstance(x, bytes):
                    ld = {f3: y for f3, _, y in _fields(x)}
                    labels.append((int(ld.get(1, 0)), int(ld.get(2, 0))))  # type: ignore[arg-type]
            samples.append((locs, vals, labels))
        elif field == _P_LOCATION and isinstance(v, bytes):
            lid, lines = 0, []
            for f2, _, x in _fields(v):
                if f2 == 1 and isinstance(x, int):
                    lid = x
                elif f2 == 4 and isinstance(x, bytes):
                    ld2 = {f3: y for f3, _, y in _fields(x)}
                    lines.append((int(ld2.get(1, 0)), _signed(int(ld2.get(2, 0)))))  # type: ignore[arg-type]
            locations[lid] = lines
        elif field == _P_FUNCTION and isinstance(v, bytes):
            fd = {f2: x for f2, _, x in _fields(v)}
            # system_name holds the exact name; name may be the display form (see display_name).
            name_i = int(fd.get(3, 0) or fd.get(2, 0))  # type: ignore[call-overload]
            functions[int(fd.get(1, 0))] = (name_i, int(fd.get(4, 0)))  # type: ignore[call-overload]
        elif field == _P_PERIOD and isinstance(v, int):
            period = v
        elif field == _P_DURATION and isinstance(v, int):
            duration = v
        elif field == _P_TIME and isinstance(v, int):
            time_nanos = v
    if not strings or strings[0] != "":
        raise ValueError("no string table")
    prof = Profile()
    prof.metadata.source_format = "pprof"
    if period:
        prof.metadata.requested_rate = 1e9 / period
    if duration:
        prof.metadata.duration_s = duration / 1e9
    if time_nanos:
        prof.metadata.start_time = time_nanos / 1e9
    count_index = next((i for i, (_, unit) in enumerate(sample_types) if strings[unit] == "count"), 0)
    frame_cache: dict[int, list[int]] = {}  # location id -> interned frame indices, root first
    for locs, vals, labels in samples:
        count = vals[count_index] if count_index < len(vals) else 0
        lab = {strings[k]: strings[v] for k, v in labels}
        pid = int(lab["pid"]) if lab.get("pid", "").isdigit() else 0
        tid = int(lab["tid"]) if lab.get("tid", "").isdigit() else 0
        if pid:
            prof.ensure_process(pid)
        if "thread_name" in lab or tid:
            prof.ensure_thread(pid, tid, lab.get("thread_name", ""))
        stack: list[int] = []
        for lid in reversed(locs):  # leaf first in pprof; root first here
            fr = frame_cache.get(lid)
            if fr is None:
                frames = []
                # Several lines in one location are inlined calls, the last one outermost.
                for fid, line in reversed(locations.get(lid, [])):
                    name_i, file_i = functions.get(fid, (0, 0))
                    frames.append(Frame(strings[name_i] or f"0x{lid:x}", strings[file_i], max(line, 0)))
                fr = frame_cache[lid] = [prof.intern(f) for f in frames or [Frame(f"location {lid}")]]
            stack += fr
        prof.add_indices(pid, tid, tuple(stack), count)
    return prof
