"""The `obskit logs` pipeline: readers -> bounded queue -> prefilter -> parse -> filter -> sinks."""

from __future__ import annotations

import os
import queue
import sys
import threading
from dataclasses import dataclass, field
from typing import IO, Any, Callable

from obskit.logs.filters import Filters
from obskit.logs.model import LogRecord, Marker
from obskit.logs.parse import _CONTINUATION, Parser
from obskit.logs.sources import Batch, Eof, Reader, RecentDrops, SourceSpec
from obskit.logs.summary import LogsSummary, SourceStat, SummaryBuilder

QUEUE_BATCHES = 16


@dataclass
class Options:
    follow: bool = False
    on_full: str = "block"  # block | drop
    cap: int = 65536
    tail: int | None = None
    mode: str = "human"  # human | json | raw | summary | none
    color: bool = False
    summary: bool = False


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
        self.renderer = LineRenderer(color=opts.color, show_source=len(specs) > 1, source_width=min(width, 24))
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

    def run(self) -> LogsSummary | None:
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
                self.err(f"obskit: following {names} (Ctrl-C to stop)")
            while live:
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

    def build_summary(self) -> LogsSummary:
        assert self.summary is not None
        c = self.counters
        sources = [SourceStat(r.spec.label, r.lines_read, r.bytes_read, c.per_source_formats.get(r.spec.label, {}),
                              r.dropped, r.capped, r.rotations, r.gaps) for r in self.readers]
        return self.summary.result(lines=c.lines, unparsed=c.unparsed, capped=sum(r.capped for r in self.readers),
                                   invalid_utf8=c.invalid_utf8, dropped=self.dropped, gaps=self.gaps,
                                   sources=sources, interrupted=self.interrupted)

    @property
    def dropped(self) -> int:
        return sum(r.dropped for r in self.readers)

    @property
    def gaps(self) -> int:
        return sum(r.gaps for r in self.readers)

    @property
    def capped(self) -> int:
        return sum(r.capped for r in self.readers)

    # -- per batch ------------------------------------------------------------------
    def _batch(self, batch: Batch, parser: Parser) -> None:
        c = self.counters
        lines = batch.lines
        n = len(lines)
        c.lines += n
        capped = set(batch.capped) if batch.capped else None
        line_pre = self.line_pre
        block = self.block_pre
        if block is not None:
            idxs: Any = block.candidates(lines)
            c.skipped_by_prefilter += n - len(idxs)
        else:
            idxs = range(n)
        continuation = _CONTINUATION.match
        source = batch.source
        pending = self.pending
        expected = 0  # the index the parser's continuation state belongs to
        todo = list(idxs) if block is not None else None
        k = 0
        i = 0
        while True:
            if todo is None:
                if i >= n:
                    break
            else:
                # next candidate, or a traceback line following a kept python-format record
                if not (i < n and i == expected and parser.follows_python_record()
                        and continuation(lines[i].decode("utf-8", "replace"))):
                    while k < len(todo) and todo[k] < i:
                        k += 1
                    if k >= len(todo):
                        break
                    i = todo[k]
                    k += 1
                if i != expected:
                    parser.last = None
                    self._flush_pending(source)
            line = lines[i]
            expected = i + 1
            i += 1
            if line_pre is not None and not line_pre(line) and not (
                source in pending and parser.follows_python_record()
                and continuation(line.decode("utf-8", "replace"))
            ):  # --grep selects records by their first line; their traceback lines come with them
                parser.last = None
                self._flush_pending(source)
                continue
            rec, bad = parser.parse(line, capped is not None and i - 1 in capped)
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
                    continue
            elif rec.format == "plain":
                c.unparsed += 1
            self._flush_pending(source)
            if rec.format == "python":
                pending[source] = (rec, [line])
            else:
                self._emit(rec, line)
        if self.opts.follow:
            self._flush_pending(source)
        self._flush_out()

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
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
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
