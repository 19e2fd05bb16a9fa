"""Profile file formats: choosing one from a file name, writing atomically, loading any of them.

Writers: ``html`` (obskit's own flame graph), ``speedscope``, ``collapsed`` (folded
stacks), ``pprof`` (gzipped profile.proto) and ``json`` (obskit's own, loads back
unchanged).  :func:`load_profile` reads obskit ``.json``, speedscope JSON (py-spy's and
others', sampled and evented), py-spy raw / folded stacks and pprof.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib

from obskit.errors import InputError, ObskitError, UsageError
from obskit.profile.model import Profile, parse_collapsed, to_collapsed
from obskit.safefile import write_bytes

FORMATS = ("html", "speedscope", "collapsed", "pprof", "json")

# Longest suffix first: ".speedscope.json" must win over ".json", ".pb.gz" over ".gz".
_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".speedscope.json", "speedscope"),
    (".pb.gz", "pprof"),
    (".pprof", "pprof"),
    (".html", "html"),
    (".htm", "html"),
    (".collapsed", "collapsed"),
    (".folded", "collapsed"),
    (".txt", "collapsed"),
    (".json", "json"),
)

KNOWN_EXTENSIONS = ", ".join(s for s, _ in _SUFFIXES)


def format_for_path(path: str, explicit: str | None = None) -> str:
    """The output format for ``path``: ``explicit`` when given, else from the file name."""
    if explicit:
        fmt = explicit.lower()
        if fmt not in FORMATS:
            raise UsageError(f"unknown profile format {explicit!r}", f"choose one of {', '.join(FORMATS)}")
        return fmt
    name = os.path.basename(str(path)).lower()
    for suffix, fmt in _SUFFIXES:
        if name.endswith(suffix):
            return fmt
    raise UsageError(f"cannot tell the profile format of {path!r} from its name",
                     f"use one of {KNOWN_EXTENSIONS}, or --format {'|'.join(FORMATS)}")


def render(profile: Profile, fmt: str) -> bytes:
    """The bytes of ``profile`` in format ``fmt``."""
    if fmt == "html":
        from obskit.profile.html import render_html

        return render_html(profile)
    if fmt == "speedscope":
        from obskit.profile.speedscope import to_speedscope

        return json.dumps(to_speedscope(profile), separators=(",", ":")).encode()
    if fmt == "collapsed":
        return to_collapsed(profile).encode("utf-8")
    if fmt == "pprof":
        from obskit.profile.pprof import encode_pprof

        return encode_pprof(profile)
    if fmt == "json":
        return json.dumps(profile.to_dict(), separators=(",", ":")).encode("utf-8")
    raise UsageError(f"unknown profile format {fmt!r}", f"choose one of {', '.join(FORMATS)}")


def write_profile(profile: Profile, path: str, fmt: str | None = None) -> int:
    """Write ``profile`` to ``path`` in ``fmt`` (default: from the name); returns bytes written."""
    return write_bytes(path, render(profile, format_for_path(path, fmt)))


def detect_format(data: bytes) -> str:
    """What ``data`` holds: json, speedscope, pprof or collapsed (raises InputError otherwise)."""
    if data[:2] == b"\x1f\x8b":
        return "pprof"
    head = data[:4096].lstrip()
    if head.startswith(b"{"):
        if b'"obskit.profile/' in head or b'"schema"' in head:
            return "json"
        return "speedscope"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # Cut in the middle of a character at 4096 bytes is fine; anything else is binary.
        try:
            text = head[:-4].decode("utf-8")
        except UnicodeDecodeError:
            return "pprof"  # uncompressed profile.proto; the decoder says so if it is not
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")), "")
    if first and first.rpartition(" ")[2].isdigit():
        return "collapsed"
    raise InputError("not a profile obskit reads", "expected obskit .json, speedscope JSON, folded stacks or pprof")


MAX_INPUT_BYTES = 256 * 1024 * 1024


def load_profile(path: str) -> Profile:
    """Read a saved profile of any supported format (detected from the content, not the name)."""
    from obskit.safefile import read_input

    data = read_input(path, limit=MAX_INPUT_BYTES)  # /dev/zero or a FIFO: an input error, not MemoryError or a hang
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark, as some Windows editors write
        data = data[3:]
    if not data.strip():
        raise InputError(f"{path} is empty", "the recording may have been interrupted before anything was written")
    try:
        fmt = detect_format(data)
        prof = _load(data, fmt)
    except ObskitError as e:
        if isinstance(e, InputError) and path not in e.message:
            raise InputError(f"{path}: {e.message}", e.hint) from None
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, RecursionError, MemoryError,
            EOFError, zlib.error) as e:
        # A damaged or hostile file that got past a decoder's own checks: still an input error, in one line.
        what = type(e).__name__ if isinstance(e, (RecursionError, MemoryError)) else f"{type(e).__name__}: {e}"
        raise InputError(f"{path}: cannot read this profile ({what[:200]})", "the file is damaged or not a profile") from None
    if not prof.metadata.source_format:
        prof.metadata.source_format = fmt
    return prof


def _load(data: bytes, fmt: str) -> Profile:
    if fmt == "pprof":
        from obskit.profile.pprof import decode_pprof

        if data[:2] == b"\x1f\x8b":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as e:
                raise InputError(f"corrupt gzip data ({e})", "the file may be truncated") from None
        return decode_pprof(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", "expected obskit .json, speedscope JSON, folded stacks or pprof") from None
    if fmt == "collapsed":
        return parse_collapsed(text.split("\n"))
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}",
                         "the file may be truncated") from None
    if isinstance(doc, dict) and str(doc.get("schema", "")).startswith("obskit.profile/"):
        return Profile.from_dict(doc)
    if isinstance(doc, dict) and "profiles" in doc and "shared" in doc:
        from obskit.profile.speedscope import from_speedscope

        return from_speedscope(doc)
    raise InputError("JSON that is neither an obskit profile nor a speedscope file",
                     "expected `schema: obskit.profile/1` or speedscope's `shared`/`profiles`")
