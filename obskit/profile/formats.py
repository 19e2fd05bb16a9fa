"""Profile file formats: choosing one from a file name, writing atomically, loading any of them.

Writers: ``html`` (obskit's own flame graph), ``speedscope``, ``collapsed`` (folded
stacks), ``pprof`` (gzipped profile.proto), ``trace-event`` (Chrome's Trace Event Format)
and ``json`` (obskit's own, loads back unchanged).  :func:`load_profile` reads obskit
``.json``, speedscope JSON (py-spy's and others', sampled and evented), py-spy raw /
folded stacks (as a stream), pprof and Chrome traces, each within a reading budget.
"""

from __future__ import annotations

import gc
import json
import os
import zlib
from collections.abc import Iterator
from typing import Any

from obskit.errors import InputError, ObskitError, UsageError
from obskit.profile.model import Profile, parse_collapsed, to_collapsed
from obskit.safefile import write_bytes

FORMATS = ("html", "speedscope", "collapsed", "pprof", "trace-event", "json")

# Longest suffix first: ".speedscope.json" must win over ".json", ".pb.gz" over ".gz".
_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".speedscope.json", "speedscope"),
    (".trace.json", "trace-event"),
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

# Other tools' formats whose names end like one obskit writes: `-o x.gecko.json` must not quietly
# become obskit JSON that the Firefox Profiler then refuses.
FOREIGN_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".gecko.json", "the Firefox Profiler's format"),
    (".firefox.json", "the Firefox Profiler's format"),
    (".cpuprofile.json", "Chrome DevTools' .cpuprofile format"),
    (".heapprofile.json", "Chrome DevTools' heap profile format"),
    (".pyinstrument.json", "pyinstrument's format"),
    (".memray.json", "memray's format"),
    (".austin.json", "austin's format"),
    (".perfetto.json", "Perfetto's format"),
)


def format_for_path(path: str, explicit: str | None = None) -> str:
    """The output format for ``path``: ``explicit`` when given, else from the file name."""
    if explicit:
        fmt = explicit.lower()
        if fmt not in FORMATS:
            raise UsageError(f"unknown profile format {explicit!r}", f"choose one of {', '.join(FORMATS)}")
        return fmt
    name = os.path.basename(str(path)).lower()
    for suffix, what in FOREIGN_SUFFIXES:
        if name.endswith(suffix):
            raise UsageError(f"obskit does not write {what} ({path!r})",
                             f"use one of {KNOWN_EXTENSIONS}, or --format {'|'.join(FORMATS)}")
    for suffix, fmt in _SUFFIXES:
        if name.endswith(suffix):
            return fmt
    raise UsageError(f"cannot tell the profile format of {path!r} from its name",
                     f"use one of {KNOWN_EXTENSIONS}, or --format {'|'.join(FORMATS)}")


def render(profile: Profile, fmt: str, notes: list[str] | None = None) -> bytes:
    """The bytes of ``profile`` in format ``fmt``; ``notes`` receives what the file leaves out."""
    if fmt == "html":
        from obskit.profile.html import render_html

        return render_html(profile, notes=notes)
    if fmt == "speedscope":
        from obskit.profile.speedscope import to_speedscope

        return json.dumps(to_speedscope(profile), separators=(",", ":")).encode()
    if fmt == "collapsed":
        return to_collapsed(profile).encode("utf-8")
    if fmt == "pprof":
        from obskit.profile.pprof import encode_pprof

        return encode_pprof(profile)
    if fmt == "trace-event":
        from obskit.profile.trace_event import to_trace_event

        return json.dumps(to_trace_event(profile), separators=(",", ":")).encode("utf-8")
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
    if head.startswith(b"["):  # a Chrome trace in the JSON Array Format
        return "json"
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


# Budgets for reading files from elsewhere: a profile is never worth more memory than these.
MAX_DECOMPRESSED = 128 * 1024 * 1024  # bytes a gzipped file may expand to
MAX_JSON_BYTES = 512 * 1024 * 1024  # JSON is parsed whole; folded stacks are streamed and have no size cap
_HEAD = 64 * 1024


def _open_input(path: str) -> Any:
    """``path`` opened for reading without waiting: a FIFO nobody writes to reads as empty
    (an input error) instead of blocking in open()."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def load_profile(path: str) -> Profile:
    """Read a saved profile of any supported format (detected from the content, not the name)."""
    try:
        with _open_input(path) as fh:
            head = fh.read(_HEAD)
            if head.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark, as some Windows editors write
                head = head[3:]
                fh.seek(3)
            else:
                fh.seek(0)
            if not head.strip():
                if fh.read(1 << 20).strip():  # blank for 64 KiB is not a profile either
                    raise InputError(f"{path}: not a profile obskit reads", "expected a profile file")
                raise InputError(f"{path} is empty",
                                 "the recording may have been interrupted before anything was written")
            gc_was = gc.isenabled()
            # Millions of new, acyclic objects: the cycle collector would rescan them all, again and again.
            gc.disable()
            try:
                fmt = detect_format(head)
                prof = _load_stream(fh, fmt)
            except ObskitError as e:
                if isinstance(e, InputError) and path not in e.message:
                    raise InputError(f"{path}: {e.message}", e.hint) from None
                raise
            finally:
                if gc_was:
                    gc.enable()
    except FileNotFoundError:
        raise InputError(f"no such file: {path}", "check the path") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory", "give a profile file") from None
    except MemoryError:
        raise InputError(f"{path} needs more memory than this machine gives obskit",
                         "convert it to folded stacks elsewhere, or free memory") from None
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}", "check its permissions") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, RecursionError, EOFError,
            zlib.error) as e:
        # A damaged or hostile file that got past a decoder's own checks: still an input error, in one line.
        what = type(e).__name__ if isinstance(e, RecursionError) else f"{type(e).__name__}: {e}"
        raise InputError(f"{path}: cannot read this profile ({what[:200]})", "the file is damaged or not a profile") from None
    if not prof.metadata.source_format:
        prof.metadata.source_format = fmt
    return prof


def _load_stream(fh: Any, fmt: str) -> Profile:
    if fmt == "collapsed":
        import io

        # newline="\n": a stack ends at \n only, never at \r or other breaks inside a frame name.
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="\n")
        try:
            return parse_collapsed(_bounded_lines(text))
        except UnicodeDecodeError:
            raise InputError("not UTF-8 text", "expected folded stacks (`a;b;c 12` per line)") from None
    data = fh.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise InputError(f"more than {MAX_JSON_BYTES >> 20} MiB of {fmt}: larger than obskit reads",
                         "convert it to folded stacks, which are read as a stream")
    return _load(data, fmt)


MAX_LINE = 16 * 1024 * 1024  # characters in one folded stack: deeper than any real one by far


def _bounded_lines(text: Any) -> Iterator[str]:
    """The lines of ``text``, refusing one longer than MAX_LINE (it would be read whole)."""
    lineno = 0
    while True:
        line = text.readline(MAX_LINE + 1)
        if not line:
            return
        lineno += 1
        if len(line) > MAX_LINE:
            raise InputError(f"line {lineno} is longer than {MAX_LINE >> 20} Mi characters",
                             "a folded stack is one line per stack")
        yield line


def gunzip(data: bytes, limit: int = MAX_DECOMPRESSED) -> bytes:
    """Decompress gzip ``data`` (all members), refusing to expand beyond ``limit`` bytes."""
    out = bytearray()
    d = zlib.decompressobj(wbits=31)
    buf = data
    while True:
        try:
            out += d.decompress(buf, limit + 1 - len(out))
        except zlib.error as e:
            raise InputError(f"corrupt gzip data ({e})", "the file may be truncated") from None
        if len(out) > limit:
            raise InputError(f"gzip data expands to more than {limit >> 20} MiB (a compression bomb?)",
                             "obskit reads profiles up to that size")
        if d.unconsumed_tail:
            buf = d.unconsumed_tail
            continue
        if not d.eof:
            raise InputError("corrupt gzip data (truncated)", "the file may be truncated")
        rest = d.unused_data
        if not rest.strip(b"\0"):
            return bytes(out)
        d, buf = zlib.decompressobj(wbits=31), rest


def _load(data: bytes, fmt: str) -> Profile:
    if fmt == "pprof":
        from obskit.profile.pprof import decode_pprof

        if data[:2] == b"\x1f\x8b":
            data = gunzip(data)
        return decode_pprof(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", "expected obskit .json, speedscope JSON, folded stacks or pprof") from None
    del data
    if fmt == "collapsed":
        return parse_collapsed(text.split("\n"))
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}",
                         "the file may be truncated") from None
    except RecursionError:
        raise InputError("JSON nested deeper than obskit reads", "no profile format nests that deep") from None
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise InputError(f"invalid JSON ({e})", "the file may be corrupt") from None
    del text
    if isinstance(doc, dict) and str(doc.get("schema", "")).startswith("obskit.profile/"):
        return Profile.from_dict(doc)
    if isinstance(doc, dict) and "profiles" in doc and "shared" in doc:
        from obskit.profile.speedscope import from_speedscope

        return from_speedscope(doc)
    if (isinstance(doc, dict) and "traceEvents" in doc) or isinstance(doc, list):
        from obskit.profile.trace_event import from_trace_event

        return from_trace_event(doc)
    raise InputError("JSON that is neither an obskit profile, a speedscope file nor a Chrome trace",
                     "expected `schema: obskit.profile/1`, speedscope's `shared`/`profiles` or `traceEvents`")
