"""Packing a source directory as a snapshot, with the CLI's rules.

This is the Python twin of ``cli/pack.c`` and ``cli/ignore.c``: the same
entries are left out (``.git/``, ``__pycache__/`` and what the directory's
``.trainyardignore`` excludes, in ``.gitignore`` syntax), the walk is
depth-first in byte order of names, and entries carry only names, types,
permission bits, sizes and mtimes (owner 0, no gzip time stamp), so packing
the same tree twice gives the same bytes and so the same snapshot id.
Symbolic links are stored as links, never followed; sockets, FIFOs and
devices are skipped with a warning.

``.trainyardignore`` syntax (as ``cli/ignore.c``):

* blank lines and lines starting with ``#`` are ignored (``\\#`` for a literal
  ``#``); trailing spaces are dropped unless escaped with ``\\``;
* a leading ``!`` re-includes what an earlier pattern excluded (``\\!`` for a
  literal ``!``); the last matching pattern decides; nothing inside an
  excluded directory can be re-included, because it is never visited;
* a trailing ``/`` makes the pattern match directories only;
* a ``/`` at the start or in the middle anchors the pattern to the root, where
  it matches the whole relative path; otherwise it matches the base name at
  any depth;
* ``*``, ``?`` and ``[...]`` never match ``/``; a component ``**`` matches any
  number of components.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import stat
import tarfile
import tempfile
import warnings
from dataclasses import dataclass
from typing import IO, List, Optional, Pattern, Sequence, cast

IGNORE_FILE = ".trainyardignore"
IGNORE_FILE_MAX = 1 << 20
ALWAYS_SKIPPED_DIRS = (".git", "__pycache__")
MAX_DEPTH = 256
MAX_PARTS = 128
READ_CHUNK = 256 * 1024

_POSIX_CLASSES = {
    "alnum": "a-zA-Z0-9",
    "alpha": "a-zA-Z",
    "blank": " \\t",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "\\x21-\\x7e",
    "lower": "a-z",
    "print": "\\x20-\\x7e",
    "punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "space": " \\t\\n\\r\\f\\v",
    "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
}


class PackError(Exception):
    """A source directory cannot be packed; the message says why."""


def _bracket(pattern: str, i: int) -> "tuple[Optional[str], int]":
    """The regex class for the bracket expression at pattern[i] == '[', and
    the index after it; (None, i) when the bracket is not closed (then '['
    is a literal, as for fnmatch(3))."""
    j = i + 1
    negate = j < len(pattern) and pattern[j] in "!^"
    if negate:
        j += 1
    parts: List[str] = []
    first = True
    while j < len(pattern):
        ch = pattern[j]
        if ch == "]" and not first:
            body = "".join(parts) or "\\x00-\\U0010ffff"
            # With FNM_PATHNAME a bracket never matches '/'.
            cls = "[^/" + body + "]" if negate else "(?!/)[" + body + "]"
            return cls, j + 1
        first = False
        if ch == "[" and pattern.startswith("[:", j):
            end = pattern.find(":]", j + 2)
            name = pattern[j + 2:end] if end >= 0 else ""
            if name in _POSIX_CLASSES:
                parts.append(_POSIX_CLASSES[name])
                j = end + 2
                continue
        if ch == "\\" and j + 1 < len(pattern):
            j += 1
            ch = pattern[j]
        if (j + 2 < len(pattern) and pattern[j + 1] == "-" and pattern[j + 2] != "]"):
            hi = pattern[j + 2]
            if hi == "\\" and j + 3 < len(pattern):
                hi = pattern[j + 3]
                j += 1
            parts.append(re.escape(ch) + "-" + re.escape(hi))
            j += 3
            continue
        parts.append(re.escape(ch))
        j += 1
    return None, i


def glob_regex(pattern: str) -> Pattern[str]:
    """fnmatch(3) with FNM_PATHNAME as a compiled regex (match the whole string)."""
    out: List[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            cls, after = _bracket(pattern, i)
            if cls is not None:
                out.append(cls)
                i = after
                continue
            out.append(re.escape(ch))
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


@dataclass
class _Rule:
    pattern: str
    negate: bool
    dir_only: bool
    anchored: bool
    regex: Pattern[str]
    parts: Optional[List[Optional[Pattern[str]]]]  # anchored with "**": per component, None = "**"

    def matches(self, relpath: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        if not self.anchored:
            return self.regex.fullmatch(relpath.rsplit("/", 1)[-1]) is not None
        if self.parts is None:
            return self.regex.fullmatch(relpath) is not None
        path = relpath.split("/")
        if len(self.parts) > MAX_PARTS or len(path) > MAX_PARTS:
            return False
        return _match_parts(self.parts, path)


def _match_parts(pat: Sequence[Optional[Pattern[str]]], path: Sequence[str]) -> bool:
    if not pat:
        return not path
    if pat[0] is None:
        # A trailing "**" matches what is inside, so at least one part.
        if len(pat) == 1:
            return len(path) >= 1
        return any(_match_parts(pat[1:], path[skip:]) for skip in range(len(path) + 1))
    if not path or pat[0].fullmatch(path[0]) is None:
        return False
    return _match_parts(pat[1:], path[1:])


class IgnoreRules:
    """The rules of one ``.trainyardignore`` text; ``match(relpath, is_dir)``."""

    def __init__(self, text: str = "") -> None:
        self.rules: List[_Rule] = []
        for line in text.split("\n"):
            self._add_line(line)

    def _add_line(self, line: str) -> None:
        if line.endswith("\r"):
            line = line[:-1]
        # Trailing spaces go, unless the last one is escaped.
        while line.endswith(" ") and not line.endswith("\\ "):
            line = line[:-1]
        if not line or line[0] == "#":
            return
        negate = False
        if line[0] == "!":
            negate = True
            line = line[1:]
        elif line[0] == "\\" and len(line) > 1 and line[1] in "#!":
            line = line[1:]
        dir_only = line.endswith("/")
        if dir_only:
            line = line[:-1]
        anchored = "/" in line
        if line.startswith("/"):
            line = line[1:]
        if not line:
            return
        parts: Optional[List[Optional[Pattern[str]]]] = None
        if anchored and "**" in line:
            parts = [None if p == "**" else glob_regex(p) for p in line.split("/")]
        self.rules.append(_Rule(line, negate, dir_only, anchored, glob_regex(line), parts))

    def match(self, relpath: str, is_dir: bool) -> bool:
        """True when relpath (relative, '/'-separated) is excluded."""
        for rule in reversed(self.rules):
            if rule.matches(relpath, is_dir):
                return not rule.negate
        return False

    @classmethod
    def load(cls, path: str) -> "IgnoreRules":
        """The rules in the file at path; none when it does not exist."""
        try:
            with open(path, "rb") as f:
                data = f.read(IGNORE_FILE_MAX + 1)
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            raise PackError("cannot read '%s': %s" % (path, exc.strerror or exc)) from None
        if len(data) > IGNORE_FILE_MAX:
            raise PackError("'%s' is larger than %d bytes" % (path, IGNORE_FILE_MAX))
        return cls(data.decode("utf-8", "surrogateescape"))


@dataclass
class PackResult:
    """A packed snapshot: its bytes in ``file`` (positioned at 0), its size
    and the id the server will give it (``sha256:<hex>`` of the bytes)."""

    file: IO[bytes]
    size: int
    id: str
    files: int
    dirs: int
    links: int
    skipped: int


class _Exactly(io.RawIOBase):
    """Reads exactly size bytes of f: a file that shrank since it was listed
    is padded with zeros, one that grew is cut (as libarchive does)."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        super().__init__()
        self.f = f
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        n = min(len(b), self.left, READ_CHUNK)
        if n == 0:
            return 0
        data = self.f.read(n) or b"\0" * n
        b[: len(data)] = data
        self.left -= len(data)
        return len(data)


class _HashingWriter(io.RawIOBase):
    """Writes through to f while hashing and counting the bytes."""

    def __init__(self, f: IO[bytes]) -> None:
        super().__init__()
        self.f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[no-untyped-def]
        data = bytes(b)
        self.f.write(data)
        self.sha.update(data)
        self.size += len(data)
        return len(data)


class _Packer:
    def __init__(self, root: str, tar: tarfile.TarFile, ignore: IgnoreRules,
                 must_have: Optional[str]) -> None:
        self.root = root
        self.tar = tar
        self.ignore = ignore
        self.must_have = must_have
        self.found = False
        self.files = self.dirs = self.links = self.skipped = 0

    @staticmethod
    def _info(relpath: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
        info = tarfile.TarInfo(relpath)
        info.type = kind
        info.mode = stat.S_IMODE(st.st_mode) & 0o777
        info.mtime = int(st.st_mtime)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    def add_file(self, abspath: str, relpath: str) -> None:
        try:
            fd = os.open(abspath, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as exc:
            raise PackError("cannot read '%s': %s" % (abspath, exc.strerror)) from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise PackError("'%s' changed while it was being packed" % abspath)
            info = self._info(relpath, st, tarfile.REGTYPE)
            info.size = st.st_size
            self.tar.addfile(info, io.BufferedReader(_Exactly(f, st.st_size), READ_CHUNK))
        self.files += 1

    def add_link(self, abspath: str, relpath: str, st: os.stat_result) -> None:
        try:
            target = os.readlink(abspath)
        except OSError as exc:
            raise PackError("cannot read the link '%s': %s" % (abspath, exc.strerror)) from None
        info = self._info(relpath, st, tarfile.SYMTYPE)
        info.mode = 0o777
        info.linkname = target
        self.tar.addfile(info)
        self.links += 1

    def walk(self, absdir: str, reldir: Optional[str], depth: int) -> None:
        if depth > MAX_DEPTH:
            raise PackError("'%s' is nested more than %d directories deep" % (absdir, MAX_DEPTH))
        try:
            names = sorted(os.listdir(absdir), key=os.fsencode)
        except OSError as exc:
            raise PackError("cannot read the directory '%s': %s" % (absdir, exc.strerror)) from None
        for name in names:
            abspath = absdir + "/" + name
            relpath = reldir + "/" + name if reldir else name
            try:
                st = os.lstat(abspath)
            except OSError as exc:
                raise PackError("cannot stat '%s': %s" % (abspath, exc.strerror)) from None
            if stat.S_ISDIR(st.st_mode):
                if name in ALWAYS_SKIPPED_DIRS or self.ignore.match(relpath, True):
                    self.skipped += 1
                    continue
                self.tar.addfile(self._info(relpath, st, tarfile.DIRTYPE))
                self.dirs += 1
                self.walk(abspath, relpath, depth + 1)
            elif self.ignore.match(relpath, False):
                self.skipped += 1
            elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                if stat.S_ISREG(st.st_mode):
                    self.add_file(abspath, relpath)
                else:
                    self.add_link(abspath, relpath, st)
                if relpath == self.must_have:
                    self.found = True
            else:
                warnings.warn("trainyard: skipping '%s': not a file, directory or link" % abspath,
                              stacklevel=4)
                self.skipped += 1


def pack(source_dir: str, must_have: Optional[str] = None) -> PackResult:
    """Packs source_dir as a .tar.gz in a temporary file (deleted when closed).

    must_have: a relative path (the entry script) that must be packed, else
    PackError. Raises PackError for anything that cannot be read.
    """
    root = os.fspath(source_dir)
    if not os.path.isdir(root):
        raise PackError("'%s' is not a directory" % root)
    ignore = IgnoreRules.load(os.path.join(root, IGNORE_FILE))
    out = tempfile.TemporaryFile()
    try:
        hashing = _HashingWriter(out)
        # mtime=0 and no file name: no time stamp in the gzip header, so the
        # same tree gives the same bytes.
        with gzip.GzipFile(filename="", mode="wb", fileobj=hashing, mtime=0) as gz:
            gz_io = cast(IO[bytes], gz)
            with tarfile.open(fileobj=gz_io, mode="w", format=tarfile.PAX_FORMAT,
                              encoding="utf-8", errors="surrogateescape") as tar:
                packer = _Packer(root.rstrip("/") or "/", tar, ignore, must_have)
                packer.walk(packer.root, None, 0)
        if must_have is not None and not packer.found:
            raise PackError("'%s' is not in '%s' (or %s excludes it)"
                            % (must_have, root, IGNORE_FILE))
        out.flush()
        out.seek(0)
        return PackResult(out, hashing.size, "sha256:" + hashing.sha.hexdigest(), packer.files,
                          packer.dirs, packer.links, packer.skipped)
    except BaseException:
        out.close()
        raise
