"""Reading files safely: the one place every configuration and certificate file is read.

A configuration names files (includes, ``tls_ca``, client certificates) and
an operator (or a careless script) can point any of them at the wrong thing.
The readers here therefore:

* open without blocking and read only **regular files**: a FIFO would block
  for ever, ``/dev/zero`` never ends, a directory is no file
  (:class:`~tlspolicy.errors.NotRegularFileError`);
* read at most :data:`MAX_FILE_BYTES` of one file
  (:class:`~tlspolicy.errors.FileTooLargeError`);
* with a :class:`ReadBudget`, read at most :data:`MAX_FILES_PER_LOAD` files
  and :data:`MAX_LOAD_BYTES` bytes in one load, so include fan-out is bounded
  (:class:`~tlspolicy.errors.TooManyFilesError`);
* raise only :class:`~tlspolicy.errors.FileReadError` and its subclasses,
  located at the file, and never quote the file's content.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import os
import stat
from collections.abc import Iterator
from typing import Final

from ..errors import (
    FileReadError,
    FileTooLargeError,
    Location,
    NotRegularFileError,
    TooManyFilesError,
)

__all__ = [
    "MAX_FILES_PER_LOAD",
    "MAX_FILE_BYTES",
    "MAX_LOAD_BYTES",
    "MAX_PEM_BYTES",
    "ReadBudget",
    "gc_paused",
    "open_regular_file",
    "read_regular_bytes",
    "read_regular_text",
]

MAX_FILE_BYTES: Final = 64 << 20
"""Largest configuration file read (64 MiB; a 100,000-stanza TOML file is about 6 MiB)."""

MAX_LOAD_BYTES: Final = 256 << 20
"""Most bytes one load reads over all its files (256 MiB)."""

MAX_FILES_PER_LOAD: Final = 256
"""Most files one load reads, the main file and every include counted each time."""

MAX_PEM_BYTES: Final = 16 << 20
"""Largest ``tls_ca`` / ``tls_certificate`` / ``tls_key`` file read (16 MiB)."""

_CHUNK: Final = 1 << 20


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Hold the cyclic garbage collector off while a configuration is built.

    A large configuration is hundreds of thousands of new objects, none of them garbage;
    every few hundred allocations the collector would walk them all again, which made
    up about a third of building a 100,000-stanza configuration.  Reference counting
    still frees what is dropped; the collector runs as before afterwards (or stays off,
    when the caller had turned it off).

    Afterwards every tracked object is moved into the oldest generation (``gc.freeze``
    then ``gc.unfreeze``: the permanent generation is left empty, so nothing is kept
    from the collector).  Otherwise the whole new configuration sits in the youngest
    generation, and the next two young collections would each walk all of it, about a
    tenth of a second at 100,000 stanzas, only to find no garbage.  The full collections
    still look at it, as at any long-lived object; a cycle the caller dropped meanwhile
    is freed by the next one instead of the next young one.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.freeze()
            gc.unfreeze()
            gc.enable()


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


@contextlib.contextmanager
def open_regular_file(path: str, what: str = "file") -> Iterator[int]:
    """A read-only descriptor of ``path``, which must be a regular file.

    The file is opened non-blocking (opening a FIFO then returns at once)
    and checked with ``fstat`` on the open descriptor, so what is checked
    is what is read.  Raises :class:`~tlspolicy.errors.NotRegularFileError`
    or :class:`~tlspolicy.errors.FileReadError`; ``what`` names the file in
    messages (``"file"``, ``"tls_ca"``, ``"included file"``).
    """
    where = Location(file=path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if exc.errno == errno.ENXIO:  # a socket, or a FIFO without writer on some systems
            raise NotRegularFileError(f"{what} is not a regular file", where) from None
        raise FileReadError(f"cannot read {what}: {reason}", where) from None
    except ValueError:  # a NUL character in the name: no file can have it
        raise FileReadError(f"cannot read {what}: its name holds a NUL character",
                            where) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(
                f"{what} is {_kind(mode)}, not a regular file: only regular files are read",
                where)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        yield fd
    finally:
        os.close(fd)


def read_regular_bytes(path: str | os.PathLike[str], *, max_bytes: int = MAX_FILE_BYTES,
                       what: str = "file") -> bytes:
    """The content of a regular file of at most ``max_bytes`` bytes.

    Raises :class:`~tlspolicy.errors.FileTooLargeError` for a larger file
    (found while reading, so a file growing meanwhile is caught too), and
    the errors of :func:`open_regular_file`.
    """
    name = os.fspath(path)
    with open_regular_file(name, what) as fd:
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                chunk = os.read(fd, min(_CHUNK, max_bytes + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    raise FileTooLargeError(
                        f"{what} is larger than {max_bytes} bytes, the most read from one file",
                        Location(file=name))
        except OSError as exc:
            raise FileReadError(f"cannot read {what}: {exc.strerror or type(exc).__name__}",
                                Location(file=name)) from None
    return b"".join(chunks)


def _decode(data: bytes, name: str, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        # The reason and the position only: the bytes themselves are not quoted.
        raise FileReadError(f"{what} is not UTF-8 text: {exc.reason} at byte {exc.start}",
                            Location(file=name, line=line)) from None


def read_regular_text(path: str | os.PathLike[str], *, max_bytes: int = MAX_FILE_BYTES,
                      what: str = "file") -> str:
    """The UTF-8 text of a regular file (see :func:`read_regular_bytes`).

    Raises :class:`~tlspolicy.errors.FileReadError` for text that is not UTF-8.
    """
    name = os.fspath(path)
    return _decode(read_regular_bytes(name, max_bytes=max_bytes, what=what), name, what)


class ReadBudget:
    """The files and bytes one load may still read (include fan-out is bounded by it).

    Every read counts, the same file read twice included: a configuration
    that includes one file from 32 nested places is refused, not read 2^32
    times.
    """

    def __init__(self, *, max_files: int = MAX_FILES_PER_LOAD,
                 max_bytes: int = MAX_LOAD_BYTES, max_file_bytes: int = MAX_FILE_BYTES,
                 record: bool = False) -> None:
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.max_file_bytes = max_file_bytes
        self.files = 0
        self.bytes = 0
        #: With ``record``: every file read, in order, with the SHA-256 of its bytes
        #: (what a compiled-configuration cache checks before it is used).
        self.digests: list[tuple[str, str]] | None = [] if record else None

    def count_file(self, path: str) -> None:
        """Count one more file read, or raise when the load reads too many."""
        self.files += 1
        if self.files > self.max_files:
            raise TooManyFilesError(
                f"one load may read at most {self.max_files} files (includes counted "
                "each time they are read); this one reads more", Location(file=path))

    def count_bytes(self, path: str, size: int) -> None:
        """Count ``size`` more bytes read, or raise when the load reads too many."""
        self.bytes += size
        if self.bytes > self.max_bytes:
            raise FileTooLargeError(
                f"one load may read at most {self.max_bytes} bytes over all its files; "
                "this one reads more", Location(file=path))

    def read_text(self, path: str | os.PathLike[str], what: str = "file") -> str:
        """:func:`read_regular_text` charged to this budget."""
        name = os.fspath(path)
        self.count_file(name)
        limit = min(self.max_file_bytes, max(self.max_bytes - self.bytes, 0))
        try:
            data = read_regular_bytes(name, max_bytes=limit, what=what)
        except FileTooLargeError:
            if limit < self.max_file_bytes:
                raise FileTooLargeError(
                    f"one load may read at most {self.max_bytes} bytes over all its files; "
                    f"{what} takes it over", Location(file=name)) from None
            raise
        self.count_bytes(name, len(data))
        if self.digests is not None:
            self.digests.append((name, hashlib.sha256(data).hexdigest()))
        return _decode(data, name, what)
