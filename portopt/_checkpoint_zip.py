"""The ZIP layer of portopt's checkpoints: a deterministic writer of stored (uncompressed)
archives and a strict reader that checks an archive's whole structure before any member is
read: the end record at the very end, ZIP64 records only where announced, a central
directory and local headers that agree, members that tile the file with nothing between
them, nothing compressed, encrypted or present twice, and each member's CRC-32 on demand.
:mod:`portopt.checkpoint` adds the format on top (its JSON index and ``.npy`` members).
"""

from __future__ import annotations

import stat
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any

#: At most this many members, and this many bytes of central directory, are read.
MAX_MEMBERS = 2**20
MAX_DIRECTORY_BYTES = 128 * 2**20
#: Bytes read or written at a time.
CHUNK = 16 * 2**20

_LOCAL = struct.Struct("<4s5H3I2H")
_CENTRAL = struct.Struct("<4s6H3I5H2I")
_END = struct.Struct("<4s4H2IH")
_END64 = struct.Struct("<4sQ2H2I4Q")
_LOCATOR = struct.Struct("<4sIQI")
_SIG_LOCAL, _SIG_CENTRAL = b"PK\x03\x04", b"PK\x01\x02"
_SIG_END, _SIG_END64, _SIG_LOCATOR = b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07"
_U16, _U32 = 0xFFFF, 0xFFFFFFFF  # "the value is in the ZIP64 records"
# Where ZIP64 records start; module globals so that tests can reach them with small files.
_ZIP64_FROM_SIZE, _ZIP64_FROM_COUNT = _U32, _U16
_DOS_DATE = (1 << 5) | 1  # 1980-01-01, 00:00: the same object gives the same bytes
_UNIX_FILE = (stat.S_IFREG | 0o644) << 16
_COMPRESSION = {8: "deflate", 9: "deflate64", 12: "bzip2", 14: "lzma", 93: "zstandard",
                95: "xz"}


def write_zip(f: Any, members: list[tuple[str, int, int, Callable[[], Iterator[Any]]]]) -> None:
    """Write a ZIP archive of stored members (ZIP64 records only where sizes need them)."""
    offset = 0
    entries = []
    for name, size, crc, chunks in members:
        raw = name.encode("ascii")
        big = size >= _ZIP64_FROM_SIZE
        extra = struct.pack("<2H2Q", 1, 16, size, size) if big else b""
        stored = _U32 if big else size
        f.write(_LOCAL.pack(_SIG_LOCAL, 45 if big else 20, 0, 0, 0, _DOS_DATE, crc, stored,
                            stored, len(raw), len(extra)) + raw + extra)
        for chunk in chunks():
            f.write(chunk)
        entries.append((raw, size, crc, offset))
        offset += _LOCAL.size + len(raw) + len(extra) + size
    start = offset
    for raw, size, crc, at in entries:
        big, far = size >= _ZIP64_FROM_SIZE, at >= _ZIP64_FROM_SIZE
        fields = ([size, size] if big else []) + ([at] if far else [])
        extra = struct.pack(f"<2H{len(fields)}Q", 1, 8 * len(fields), *fields) if fields else b""
        version = 45 if fields else 20
        f.write(_CENTRAL.pack(_SIG_CENTRAL, (3 << 8) | version, version, 0, 0, 0, _DOS_DATE,
                              crc, _U32 if big else size, _U32 if big else size, len(raw),
                              len(extra), 0, 0, 0, _UNIX_FILE, _U32 if far else at)
                + raw + extra)
        offset += _CENTRAL.size + len(raw) + len(extra)
    count, length = len(entries), offset - start
    if count >= _ZIP64_FROM_COUNT or start >= _ZIP64_FROM_SIZE or length >= _ZIP64_FROM_SIZE:
        f.write(_END64.pack(_SIG_END64, _END64.size - 12, (3 << 8) | 45, 45, 0, 0, count, count,
                            length, start))
        f.write(_LOCATOR.pack(_SIG_LOCATOR, 0, offset, 1))
        count, length, start = _U16, _U32, _U32
    f.write(_END.pack(_SIG_END, 0, 0, count, count, length, start, 0))


class Entry:
    """One member, as the central directory describes it."""

    __slots__ = ("name", "raw", "flags", "method", "crc", "size", "packed", "offset", "data_at")

    def __init__(self, name: str, raw: bytes, flags: int, method: int, crc: int, size: int,
                 packed: int, offset: int) -> None:
        self.name, self.raw, self.flags, self.method = name, raw, flags, method
        self.crc, self.size, self.packed, self.offset = crc, size, packed, offset
        self.data_at = -1


class ZipReader:
    """Reads and checks the ZIP structure of one file. A subclass names its error
    (:attr:`error`) and may name archives it recognises (:meth:`identify`)."""

    error: type[Exception] = ValueError

    def __init__(self, f: Any, size: int, where: str) -> None:
        self.f, self.size, self.where = f, size, where
        self.entries: dict[str, Entry] = {}

    def fail(self, what: str) -> Exception:
        return self.error(f"{self.where}: {what}")

    def read_at(self, offset: int, n: int) -> bytes:
        self.f.seek(offset)
        parts, left = [], n
        while left:
            part = self.f.read(left)
            if not part:
                raise self.fail(f"the file ends at byte {offset + n - left}, inside a record "
                                f"that should end at byte {offset + n} (it changed while read?)")
            parts.append(part)
            left -= len(part)
        return b"".join(parts)

    def directory(self) -> None:
        """Parse the end record and the central directory; check every member's header
        and that the members tile the file up to the directory."""
        if self.size < _END.size + _LOCAL.size:
            raise self.fail("truncated: too short to be a ZIP archive")
        sig, disk, cd_disk, n_disk, count, length, start, comment = _END.unpack(
            self.read_at(self.size - _END.size, _END.size))
        if sig != _SIG_END:
            raise self.fail("truncated, or followed by other data: the file does not end with "
                            "a ZIP end-of-central-directory record")
        if comment:
            raise self.fail("damaged ZIP end record: it announces a comment past the end of "
                            "the file")
        if disk or cd_disk or n_disk != count:
            raise self.fail("damaged ZIP end record: it describes a multi-part archive")
        end = self.size - _END.size
        locator_at = end - _LOCATOR.size
        # ZIP64 records are used when a value needs them, and by some writers (torch.save's)
        # always: a locator right before the end record says they are there.
        if locator_at >= 0 and self.read_at(locator_at, 4) == _SIG_LOCATOR:
            count, length, start, end = self.zip64_end(count, length, start)
        elif _U16 in (count, n_disk) or _U32 in (length, start):
            raise self.fail("truncated or damaged: the ZIP end record points to ZIP64 records "
                            "that are absent")
        if count == 0:
            raise self.fail("not a portopt checkpoint: an empty ZIP archive")
        if count > MAX_MEMBERS:
            raise self.fail(f"{count} ZIP members, more than the cap of {MAX_MEMBERS}")
        if start + length != end:
            raise self.fail("truncated or damaged: the ZIP central directory is not where the "
                            "end record puts it")
        if length > MAX_DIRECTORY_BYTES:
            raise self.fail(f"a ZIP directory of {length} bytes, more than the cap of "
                            f"{MAX_DIRECTORY_BYTES}")
        entries = self.central(self.read_at(start, length), count)
        self.identify(entries)
        self.check_members(entries)
        self.tile(entries, start)

    def zip64_end(self, count: int, length: int, start: int) -> tuple[int, int, int, int]:
        at = self.size - _END.size - _LOCATOR.size
        sig, disk, record_at, disks = _LOCATOR.unpack(self.read_at(at, _LOCATOR.size))
        if disk != 0 or disks != 1 or record_at != at - _END64.size or record_at < 0:
            raise self.fail("damaged ZIP64 end locator")
        (sig, size, _, _, disk, cd_disk, n_disk, total, length64,
         start64) = _END64.unpack(self.read_at(record_at, _END64.size))
        if sig != _SIG_END64 or size != _END64.size - 12 or disk or cd_disk or n_disk != total:
            raise self.fail("damaged ZIP64 end record")
        for short, full, sentinel in ((count, total, _U16), (length, length64, _U32),
                                      (start, start64, _U32)):
            if short not in (sentinel, full):
                raise self.fail("damaged ZIP end record: it disagrees with the ZIP64 end record")
        return total, length64, start64, record_at

    def central(self, data: bytes, count: int) -> list[Entry]:
        entries, pos = [], 0
        for _ in range(count):
            if pos + _CENTRAL.size > len(data):
                raise self.fail("damaged ZIP central directory: shorter than its entry count")
            (sig, _, _, flags, method, _, _, crc, packed, size, n_name, n_extra, n_comment,
             disk, _, _, offset) = _CENTRAL.unpack_from(data, pos)
            name_at = pos + _CENTRAL.size
            end = name_at + n_name + n_extra + n_comment
            if sig != _SIG_CENTRAL or end > len(data):
                raise self.fail("damaged ZIP central directory")
            raw = data[name_at:name_at + n_name]
            name = raw.decode("utf-8", "replace") if flags & 0x800 else raw.decode("cp437")
            what = f"the ZIP directory entry of {name!r}"
            if n_comment or disk:
                raise self.fail(f"{what} is damaged: it has a comment or a disk number")
            extra = self.extra_fields(data[name_at + n_name:name_at + n_name + n_extra], what)
            wanted = [v == _U32 for v in (size, packed, offset)]
            if any(wanted):
                values = iter(self.zip64_values(extra, sum(wanted), what))
                size, packed, offset = (next(values) if w else v
                                        for w, v in zip(wanted, (size, packed, offset)))
            entries.append(Entry(name, raw, flags, method, crc, size, packed, offset))
            pos = end
        if pos != len(data):
            raise self.fail("damaged ZIP central directory: bytes after its last entry")
        return entries

    def extra_fields(self, extra: bytes, what: str) -> dict[int, bytes]:
        fields, pos = {}, 0
        while pos < len(extra):
            if pos + 4 > len(extra):
                raise self.fail(f"{what} has a damaged extra field")
            tag, n = struct.unpack_from("<2H", extra, pos)
            if pos + 4 + n > len(extra) or tag in fields:
                raise self.fail(f"{what} has a damaged extra field")
            fields[tag] = extra[pos + 4:pos + 4 + n]
            pos += 4 + n
        return fields

    def zip64_values(self, fields: dict[int, bytes], n: int, what: str) -> tuple[int, ...]:
        value = fields.get(1)
        if value is None or len(value) != 8 * n:
            raise self.fail(f"{what} has damaged ZIP64 sizes")
        return struct.unpack(f"<{n}Q", value)

    def check_members(self, entries: list[Entry]) -> None:
        for e in entries:
            if e.flags & 0x41 or e.method == 99:  # traditional, strong, or AES encryption
                raise self.fail(f"member {e.name!r} is encrypted; checkpoints never are")
            if e.method != 0:
                method = _COMPRESSION.get(e.method, f"method {e.method}")
                raise self.fail(f"member {e.name!r} is compressed ({method}); checkpoints "
                                "store members uncompressed, and load does not inflate them")
            if e.flags & ~0x800:
                raise self.fail(f"member {e.name!r} has ZIP flags 0x{e.flags:04x}, which "
                                "checkpoints never set")
            if e.packed != e.size:
                raise self.fail(f"member {e.name!r} is stored in {e.packed} bytes but holds "
                                f"{e.size}")
            if e.name in self.entries:
                raise self.fail(f"member {e.name!r} appears twice in the archive")
            self.entries[e.name] = e

    def tile(self, entries: list[Entry], directory_at: int) -> None:
        at = 0
        for e in sorted(entries, key=lambda e: e.offset):
            if e.offset != at:
                raise self.fail(f"member {e.name!r} starts at byte {e.offset}, not at byte {at}:"
                                " members overlap, or other bytes lie between them")
            if at + _LOCAL.size > directory_at:
                raise self.fail(f"the local header of {e.name!r} runs into the ZIP central "
                                "directory")
            (sig, _, flags, method, _, _, crc, packed, size, n_name,
             n_extra) = _LOCAL.unpack(self.read_at(at, _LOCAL.size))
            what = f"the local header of {e.name!r}"
            extra_at = at + _LOCAL.size + n_name
            if extra_at + n_extra > directory_at:
                raise self.fail(f"{what} is damaged: it runs into the ZIP central directory")
            raw = self.read_at(at + _LOCAL.size, n_name)
            if sig != _SIG_LOCAL or raw != e.raw or (flags, method, crc) != (e.flags, e.method,
                                                                              e.crc):
                raise self.fail(f"{what} disagrees with the ZIP central directory")
            extra = self.extra_fields(self.read_at(extra_at, n_extra), what)
            if _U32 in (size, packed):
                size, packed = self.zip64_values(extra, 2, what)
            if (size, packed) != (e.size, e.packed):
                raise self.fail(f"{what} disagrees with the ZIP central directory on its size")
            e.data_at = extra_at + n_extra
            at = e.data_at + e.size
            if at > directory_at:
                raise self.fail(f"member {e.name!r} runs into the ZIP central directory")
        if at != directory_at:
            raise self.fail(f"{directory_at - at} unexplained bytes before the ZIP central "
                            "directory")

    def crc_of(self, e: Entry) -> int:
        crc, done = 0, 0
        while done < e.size:
            n = min(CHUNK, e.size - done)
            crc = zlib.crc32(self.read_at(e.data_at + done, n), crc)
            done += n
        return crc

    def bad_member(self, e: Entry, what: str) -> Exception:
        """The error for a member whose content is wrong: damage if its CRC fails (the
        likelier story), else what is wrong with it."""
        if self.crc_of(e) != e.crc:
            return self.fail(f"member {e.name!r} fails its CRC-32 check: the file is damaged")
        return self.fail(what)

    def identify(self, entries: list[Entry]) -> None:
        """Refuse archives that are not of the expected kind (nothing here)."""
