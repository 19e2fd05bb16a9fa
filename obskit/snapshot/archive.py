"""The archive: one ``.tar.gz`` with a top directory, ``index.json`` first (so ``show`` reads it
without scanning the rest), ``index.html``, then each section's files.  Built in memory and
written once through :mod:`obskit.safefile` (atomic; no planted links), so an interrupted or
failed run never leaves half an archive behind."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import time
from typing import Any

from obskit.errors import InputError
from obskit.output import to_jsonable

from .model import index_from_dict
from .page import render_page
from .runner import Result

MAX_INDEX = 16 << 20  # bytes of index.json `show` reads at most
MAX_MEMBERS_BEFORE_INDEX = 4


def top_dir(created: float) -> str:
    return "obskit-snapshot-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(created))


def build(result: Result) -> bytes:
    index = to_jsonable(result.index)
    files: dict[str, bytes] = {"index.json": json.dumps(index, indent=1, ensure_ascii=False).encode("utf-8"),
                               "index.html": render_page(index)}
    files.update(result.files)
    top = top_dir(result.index.created)
    raw = io.BytesIO()
    # gzip level 6 and a fixed mtime: small, and the same content gives the same bytes.
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=int(result.index.created)) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo(top)
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, int(result.index.created)
        tar.addfile(d)
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o644, int(result.index.created)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def read_index(path: str) -> tuple[dict[str, Any], list[str]]:
    """The index of an archive and its member names (nothing is extracted)."""
    try:
        tar = tarfile.open(path, mode="r:*")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file", "give the archive `obskit snapshot -o` wrote") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory", "give the .tar.gz archive itself") from None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise InputError(f"{path} is not a snapshot archive ({e})", "give the .tar.gz `obskit snapshot` wrote") from None
    with tar:
        index: dict[str, Any] | None = None
        names: list[str] = []
        try:
            for i, m in enumerate(tar):
                names.append(m.name)
                if index is None and m.isfile() and m.name.endswith("/index.json") and m.name.count("/") == 1:
                    if m.size > MAX_INDEX:
                        raise InputError(f"{path}: index.json is {m.size} bytes", "not an archive obskit wrote")
                    fh = tar.extractfile(m)
                    data = fh.read(MAX_INDEX) if fh is not None else b""
                    try:
                        index = index_from_dict(json.loads(data))
                    except ValueError as e:
                        raise InputError(f"{path}: bad index.json ({e})", "not an archive obskit wrote") from None
                if index is None and i >= MAX_MEMBERS_BEFORE_INDEX:
                    break
                if len(names) > 10000:
                    break
        except (tarfile.TarError, OSError, EOFError, zlib_error()) as e:
            if index is None:
                raise InputError(f"{path}: damaged archive ({e})", "copy it again") from None
    if index is None:
        raise InputError(f"{path} has no snapshot index", "give the .tar.gz `obskit snapshot` wrote")
    return index, names


def zlib_error() -> type[Exception]:
    import zlib

    return zlib.error
