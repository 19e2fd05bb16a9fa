"""The `obskit logs` pipeline: readers -> bounded queue -> prefilter -> parse -> filter -> sinks."""

from __future__ import annotations

import os
import queue
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable

from obskit.logs.filters import Filters
from obskit.logs.model import LogRecord, Marker
from obskit.logs.parse import _CONTINUATION, Parser, summary_fields
from obskit.logs.sources import Batch, Eof, Reader, RecentDrops, SourceSpec, line_start_after, new_glob_matches
from obskit.logs.summary import LogsSummary, SourceStat, SummaryBuilder

QUEUE_BATCHES = 16
GLOB_POLL = 0.5
PARALLEL_MIN_BYTES = 16 << 20  # below this a second process costs more than it saves
Range = tuple[int, int, "int | None"]  # (source index, start, end or None for the end of the file)


@dataclass
class Options:
    follow: bool = False
    on_full: str = "block"  # block | drop
    cap: int = 65536
    tail: int | None = None
    mode: str = "human"  # human | json | raw | summary | none
    color: bool = False
    summary: bool = False
    globs: list[str] = field(default_factory=list)  # followed: files matching these later are read too


@dataclass
class Counters:
    lines: int = 0
    records: int = 0
    unparsed: int = 0
    invalid_utf8: int = 0
    skipped_by_prefilter: int = 0
    per_source_formats: dict[str, dict[str, int]] = field(default_factory=dict)


class Pipeline:
    def __init__(self, specs: list[SourceSpec], filters: Filters, opts: Options,
                 out: IO[bytes] | None = None, err: Callable[[str], None] | None = None,
                 exporter: Any = None) -> None:
        self.specs = specs
        self.filters = filters
        self.opts = opts
        # stdout closed (`>&-`): nothing to show, but counters, --summary on stderr and --otlp still work.
        self.out = out if out is not None else sys.stdout.buffer if sys.stdout is not None else open(os.devnull, "wb")
        self.err = err or _stderr_line
        self.exporter = exporter
        self.counters = Counters()
        self.summary = SummaryBuilder() if opts.summary else None
        self.readers: list[Reader] = []
        self.stop = threading.Event()
        self.markers: list[Marker] = []
        self.interrupted = False
        self.broken_pipe = False
        from obskit.logs.render import LineRenderer, json_line

        width = max((len(s.label) for s in specs), default=0)
        self.renderer = LineRenderer(color=opts.color, show_source=len(specs) > 1 or bool(opts.globs),
                                     source_width=min(max(width, 12 if opts.globs else 0), 24))
        self.json_line = json_line
        self.block_pre = filters.block_prefilter()
        self.line_pre = filters.line_prefilter()
        self.match = filters.match if filters.active else None
        mode = opts.mode
        self.render: Callable[[LogRecord], str] | None = (
            self.renderer.record if mode == "human" else json_line if mode == "json" else None)
        self.out_lines: list[str] = []
        self.raw_out: list[bytes] = []
        # --raw is byte-exact into a pipe or file (grep, jq); on a terminal escapes are shown, not run.
        self.raw_to_tty = _isatty(self.out)
        self.pending: dict[str, tuple[LogRecord, list[bytes]]] = {}
        self.capped_here = 0  # lines cut by the pipeline (chunks are cut only where they are read)
        self.summary_only = (self.summary is not None and opts.mode == "none" and not filters.active
                             and exporter is None)
        self.gaps_here = 0
        self._worker_formats: dict[str, dict[str, int]] = {}

    def run(self) -> LogsSummary | None:
        plan = self._parallel_plan()
        if plan is not None:
            return self._run_parallel(*plan)
        q: queue.Queue[object] = queue.Queue(maxsize=QUEUE_BATCHES)
        block = self.opts.on_full == "block"
        for spec in self.specs:
            r = Reader(spec, q, follow=self.opts.follow, block=block, cap=self.opts.cap, tail=self.opts.tail,
                       stop=self.stop)
            self.readers.append(r)
        parsers = {s.label: Parser(s.label) for s in self.specs}
        drops = RecentDrops()
        live = len(self.readers)
        try:
            for r in self.readers:
                r.start()
            if self.opts.follow:
                names = ", ".join(s.label for s in self.specs[:5]) + (" ..." if len(self.specs) > 5 else "")
                if self.opts.globs:
                    names += (", " if names else "") + ", ".join(self.opts.globs)
                self.err(f"obskit: following {names} (Ctrl-C to stop)")
                for spec in self.specs:
                    if spec.wait:
                        self.err(f"obskit: {spec.path} does not exist yet: waiting for it (as tail -F)")
            next_glob = time.monotonic() + GLOB_POLL
            while live or (self.opts.follow and self.opts.globs):
                if self.opts.follow and self.opts.globs and time.monotonic() >= next_glob:
                    next_glob = time.monotonic() + GLOB_POLL
                    for spec in new_glob_matches(self.opts.globs, self.specs):
                        self.specs.append(spec)
                        parsers[spec.label] = Parser(spec.label)
                        r = Reader(spec, q, follow=True, block=block, cap=self.opts.cap, tail=None, stop=self.stop)
                        self.readers.append(r)
                        r.start()
                        live += 1
                        self.err(f"obskit: following new file {spec.path}")
                try:
                    item = q.get(timeout=0.5)
                except queue.Empty:
                    self._report_drops(drops)
                    continue
                if isinstance(item, Batch):
                    self._batch(item, parsers[item.source])
                elif isinstance(item, Marker):
                    self._marker(item)
                elif isinstance(item, Eof):
                    live -= 1
                    self._flush_pending(item.source)
                    self._flush_out()
                self._report_drops(drops)
        except KeyboardInterrupt:
            self.interrupted = True
        except BrokenPipeError:
            # the reader of our output went away (`| head`): stop quietly, like any filter
            self.broken_pipe = True
            _silence_stdout()
        finally:
            self.stop.set()
            for label in list(self.pending):
                self._flush_pending(label)
            try:
                self._flush_out()
            except (BrokenPipeError, ValueError):
                self.broken_pipe = True
                _silence_stdout()
            self._report_drops(drops)
            try:
                self.out.flush()
            except (BrokenPipeError, ValueError):
                pass
        for p in parsers.values():
            self.counters.per_source_formats[p.source] = dict(p.formats)
        errors = [r.error for r in self.readers if r.error]
        for e in errors:
            self.err(f"obskit: warning: {e}")
        if self.summary is None:
            return None
        return self.build_summary()

    # -- two processes over byte ranges of regular files ------------------------------------
    def _parallel_plan(self) -> tuple[list[Range], list[Range]] | None:
        """Ranges for this process and for one worker process: regular files read once (not
        followed, no --tail, no --otlp), large enough to pay for a fork, with a second CPU."""
        o = self.opts
        if o.follow or o.tail is not None or self.exporter is not None or os.environ.get("OBSKIT_LOGS_WORKERS") == "1":
            return None
        try:
            if len(os.sched_getaffinity(0)) < 2:
                return None
        except (AttributeError, OSError):  # pragma: no cover - not Linux
            return None
        sizes: list[int] = []
        for spec in self.specs:
            if spec.path is None:
                return None
            try:
                st = os.stat(spec.path)
            except OSError:
                return None
            if not stat.S_ISREG(st.st_mode):
                return None
            sizes.append(st.st_size)
        if sum(sizes) < PARALLEL_MIN_BYTES:
            return None
        half, j = sum(sizes) // 2, 0
        while half >= sizes[j]:
            half -= sizes[j]
            j += 1
        path = self.specs[j].path
        assert path is not None
        try:
            cut = line_start_after(path, half, _CONTINUATION.match)
        except OSError:
            return None
        whole: list[Range] = [(i, 0, None) for i in range(len(sizes))]
        mine: list[Range] = [*whole[:j], (j, 0, cut)]
        theirs: list[Range] = [(j, cut, None), *whole[j + 1:]]
        return mine, theirs

    def _run_ranges(self, ranges: list[Range], parsers: dict[str, Parser]) -> None:
        for index, start, end in ranges:
            reader = self.readers[index]
            label = reader.spec.label
            parser = parsers[label]

            def sink(item: object, parser: Parser = parser) -> None:
                if isinstance(item, Batch):
                    self._batch(item, parser)
                elif isinstance(item, Marker):
                    self._marker(item)

            reader.read_range(start, end, sink)
            self._flush_pending(label)
            self._flush_out()

    def _run_parallel(self, mine: list[Range], theirs: list[Range]) -> LogsSummary | None:
        """This process reads ``mine`` and writes its output as it goes; a forked worker reads
        ``theirs`` into an unlinked temporary file, copied out after ours (order kept), and
        sends back its counters and summary."""
        import pickle
        import signal
        import tempfile

        for spec in self.specs:
            self.readers.append(Reader(spec, queue.Queue(), follow=False, block=True, cap=self.opts.cap, tail=None,
                                       stop=self.stop))
        parsers = {s.label: Parser(s.label) for s in self.specs}
        try:
            spool = tempfile.TemporaryFile(prefix="obskit-logs-")
        except OSError:
            return self._run_ranges_alone(mine + theirs, parsers)
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(rfd)
            notes: list[str] = []
            try:
                self.out = open(spool.fileno(), "wb", closefd=False, buffering=1 << 20)
                self.err = notes.append
                self._run_ranges(theirs, parsers)
                self.out.flush()
            except KeyboardInterrupt:
                self.interrupted = True
            except BaseException as e:  # reported by the parent, never a traceback here
                notes.append(f"obskit: warning: worker: {type(e).__name__}: {e}")
            finally:
                try:
                    self.out.flush()
                    sent: dict[str, Any] = {"counters": self.counters, "capped": self.capped_here, "notes": notes,
                             "summary": self.summary, "interrupted": self.interrupted,
                             "formats": {k: p.formats for k, p in parsers.items()},
                             "readers": [(r.lines_read, r.bytes_read, r.capped, r.error) for r in self.readers]}
                    data = pickle.dumps(sent)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(wfd, view):]
                finally:
                    os._exit(0)
        os.close(wfd)
        try:
            self._run_ranges(mine, parsers)
        except KeyboardInterrupt:
            self.interrupted = True
            os.kill(pid, signal.SIGINT)
        except BrokenPipeError:
            self.broken_pipe = True
            _silence_stdout()
            os.kill(pid, signal.SIGKILL)
        state: dict[str, Any] | None = None
        try:
            with os.fdopen(rfd, "rb") as r:
                data = r.read()
            state = pickle.loads(data) if data else None
        except KeyboardInterrupt:
            self.interrupted = True
            os.kill(pid, signal.SIGKILL)
        except (pickle.UnpicklingError, EOFError, ValueError):
            state = None
        finally:
            os.waitpid(pid, 0)
        try:
            if state is None and self.broken_pipe:
                pass  # nobody reads our output any more: the worker was stopped on purpose
            elif state is None:
                self.err("obskit: warning: the worker reading the second half stopped without a result; "
                         "that part is missing (OBSKIT_LOGS_WORKERS=1 reads in one process)")
                self.gaps_here += 1
            else:
                self._merge(state)
                if not self.broken_pipe:
                    self.out.flush()
                    spool.seek(0)
                    while chunk := spool.read(1 << 20):
                        self.out.write(chunk)
                    self.out.flush()
                for note in state["notes"]:
                    self.err(note)
        except BrokenPipeError:
            self.broken_pipe = True
            _silence_stdout()
        finally:
            spool.close()
        for p in parsers.values():
            formats = dict(p.formats)
            for k, n in self._worker_formats.get(p.source, {}).items():
                formats[k] = formats.get(k, 0) + n
            self.counters.per_source_formats[p.source] = formats
        if self.summary is None:
            return None
        return self.build_summary()

    def _run_ranges_alone(self, ranges: list[Range], parsers: dict[str, Parser]) -> LogsSummary | None:
        try:
            self._run_ranges(ranges, parsers)
        except KeyboardInterrupt:
            self.interrupted = True
        except BrokenPipeError:
            self.broken_pipe = True
            _silence_stdout()
        for p in parsers.values():
            self.counters.per_source_formats[p.source] = dict(p.formats)
        return self.build_summary() if self.summary is not None else None

    def _merge(self, state: dict[str, Any]) -> None:
        c, o = self.counters, state["counters"]
        c.lines += o.lines
        c.records += o.records
        c.unparsed += o.unparsed
        c.invalid_utf8 += o.invalid_utf8
        c.skipped_by_prefilter += o.skipped_by_prefilter
        self.capped_here += state["capped"]
        self.interrupted = self.interrupted or state["interrupted"]
        if self.summary is not None and state["summary"] is not None:
            self.summary.merge(state["summary"])
        parsers_formats: dict[str, dict[str, int]] = state["formats"]
        for r, (lines, nbytes, capped, error) in zip(self.readers, state["readers"]):
            r.lines_read += lines
            r.bytes_read += nbytes
            r.capped += capped
            r.error = r.error or error
        self._worker_formats = parsers_formats

    def build_summary(self) -> LogsSummary:
        assert self.summary is not None
        c = self.counters
        sources = [SourceStat(r.spec.label, r.lines_read, r.bytes_read, c.per_source_formats.get(r.spec.label, {}),
                              r.dropped, r.capped, r.rotations, r.gaps) for r in self.readers]
        return self.summary.result(lines=c.lines, unparsed=c.unparsed, capped=self.capped,
                                   invalid_utf8=c.invalid_utf8, dropped=self.dropped, gaps=self.gaps,
                                   sources=sources, interrupted=self.interrupted)

    @property
    def dropped(self) -> int:
        return sum(r.dropped for r in self.readers)

    @property
    def gaps(self) -> int:
        return sum(r.gaps for r in self.readers) + self.gaps_here

    @property
    def capped(self) -> int:
        return sum(r.capped for r in self.readers) + self.capped_here

    # -- per batch ------------------------------------------------------------------
    def _batch(self, batch: Batch, parser: Parser) -> None:
        if batch.data:
            self._chunk(batch.data, batch.source, parser, batch.count)
        else:
            self._lines(batch.lines, set(batch.capped), batch.source, parser)
        if self.opts.follow:
            self._flush_pending(batch.source)
        self._flush_out()

    def _chunk(self, data: bytes, source: str, parser: Parser, n: int = -1) -> None:
        """A chunk of whole lines (``n`` of them, when the reader counted them already): with a
        prefilter only its candidate lines (and the traceback lines after a kept record) are cut
        out of it and parsed; the rest are only counted."""
        c = self.counters
        if n < 0:
            n = data.count(b"\n")
        c.lines += n
        block = self.block_pre
        if block is None:
            lines = data.split(b"\n")
            lines.pop()
            capped: set[int] = set()
            if len(data) > self.opts.cap and max(map(len, lines)) > self.opts.cap:
                cap = self.opts.cap
                for i, line in enumerate(lines):
                    if len(line) > cap:
                        lines[i] = line[:cap]
                        capped.add(i)
                self.capped_here += len(capped)
            self._lines(lines, capped, source, parser, counted=True)
            return
        spans = block.spans(data)
        c.skipped_by_prefilter += n - len(spans)
        continuation = _CONTINUATION.match
        find = data.find
        size = len(data)
        cap = self.opts.cap
        expected = 0  # where the line after the last one parsed starts (a chunk continues the one before)
        k = 0
        while True:
            start = -1
            if 0 <= expected < size and parser.follows_python_record():
                end = find(b"\n", expected)
                end = size if end < 0 else end
                if continuation(data[expected:min(end, expected + 200)].decode("utf-8", "replace")):
                    start = expected
            if start < 0:
                while k < len(spans) and spans[k][0] < expected:
                    k += 1
                if k >= len(spans):
                    break
                start, end = spans[k]
                k += 1
                if start != expected:
                    parser.last = None
                    self._flush_pending(source)
            expected = end + 1
            line = data[start:end]
            cut = len(line) > cap
            if cut:
                line = line[:cap]
                self.capped_here += 1
            self._line(line, cut, source, parser)

    def _lines(self, lines: list[bytes], capped: set[int], source: str, parser: Parser,
               counted: bool = False) -> None:
        if self.block_pre is not None and not capped and lines:
            # the chunk path over them joined (the prefilter only saves work: the filters stay exact)
            if counted:
                self.counters.lines -= len(lines)
            self._chunk(b"\n".join(lines) + b"\n", source, parser)
            return
        if not counted:
            self.counters.lines += len(lines)
        if self.summary_only and not capped:
            self._summary_lines(lines, source, parser)
            return
        for i, line in enumerate(lines):
            self._line(line, i in capped, source, parser)

    def _summary_lines(self, lines: list[bytes], source: str, parser: Parser) -> None:
        """--summary with no filter: JSON lines of a planned shape go straight to the summary
        (the same fields the full parse gives, without building records); the rest take the
        full path."""
        add = self.summary.add_fields if self.summary is not None else None
        assert add is not None
        fields = summary_fields
        formats = parser.formats
        n = 0
        for line in lines:
            f = fields(line)
            if f is None:
                self._line(line, False, source, parser)
                continue
            if parser.last is not None or source in self.pending:
                parser.last = None
                self._flush_pending(source)
            add(*f)
            n += 1
        if n:
            formats["json"] = formats.get("json", 0) + n
            self.counters.records += n

    def _line(self, line: bytes, capped: bool, source: str, parser: Parser) -> None:
        c = self.counters
        pending = self.pending
        if self.line_pre is not None and not self.line_pre(line) and not (
            source in pending and parser.follows_python_record()
            and _CONTINUATION.match(line.decode("utf-8", "replace"))
        ):  # --grep selects records by their first line; their traceback lines come with them
            parser.last = None
            self._flush_pending(source)
            return
        rec, bad = parser.parse(line, capped)
        if bad:
            c.invalid_utf8 += 1
        if rec.format == "continuation":
            held = pending.get(source)
            if held is not None:
                # a traceback line: part of the record it follows, not a record of its own
                prev = held[0]
                tb = prev.attrs.get("exc_info")
                prev.attrs["exc_info"] = rec.raw if tb is None else f"{tb}\n{rec.raw}"
                prev.raw = f"{prev.raw}\n{rec.raw}"
                held[1].append(line)
                return
        elif rec.format == "plain":
            c.unparsed += 1
        self._flush_pending(source)
        if rec.format == "python":
            pending[source] = (rec, [line])
        else:
            self._emit(rec, line)

    def _flush_pending(self, source: str) -> None:
        held = self.pending.pop(source, None)
        if held is not None:
            self._emit(held[0], b"\n".join(held[1]))

    def _emit(self, rec: LogRecord, raw: bytes) -> None:
        if self.match is not None and not self.match(rec):
            return
        self.counters.records += 1
        if self.summary is not None:
            self.summary.add(rec)
        if self.exporter is not None:
            self.exporter.submit(rec)
        if self.render is not None:
            self.out_lines.append(self.render(rec))
        elif self.opts.mode == "raw":
            self.raw_out.append(self._raw_for_terminal(raw) if self.raw_to_tty else raw)

    @staticmethod
    def _raw_for_terminal(raw: bytes) -> bytes:
        from obskit.inert import inert

        return inert(raw.decode("utf-8", "replace"), multiline=True).encode("utf-8")

    def _flush_out(self) -> None:
        if self.out_lines:
            self._write(("\n".join(self.out_lines) + "\n").encode("utf-8", "replace"))
            self.out_lines = []
        if self.raw_out:
            self._write(b"\n".join(self.raw_out) + b"\n")
            self.raw_out = []

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        if self.opts.follow:
            self.out.flush()

    def _marker(self, m: Marker) -> None:
        self.markers.append(m)
        if self.opts.mode == "human":
            self._write((self.renderer.marker(m) + "\n").encode("utf-8", "replace"))
        else:
            self.err(f"obskit: {m.text}")

    def _report_drops(self, drops: RecentDrops) -> None:
        for label, n in drops.new_drops(self.readers):
            self._marker(Marker(label, "dropped", f"dropped {n} lines of {label}: processing fell behind "
                                "(--on-full block waits instead)", lines=n, gap=True))


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _stderr_line(text: str) -> None:
    """A line for people on stderr, through the one stderr path (``obskit.output``)."""
    from obskit.output import info, warn

    text = text.removeprefix("obskit: ")
    try:
        if text.startswith("warning: "):
            warn(text.removeprefix("warning: "))
        else:
            info(text)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


def record_stream(lines: list[bytes], source: str = "test") -> list[LogRecord]:
    """Parse lines as one source would be (a helper for tests and embedding)."""
    p = Parser(source)
    return [p.parse(line)[0] for line in lines]


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False
