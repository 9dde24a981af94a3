"""Fault injection for portopt.save / portopt.load.

Saving: the writer killed mid-save, a full disk, failing fsync, rename and folder sync, a
read-only folder, an interrupt, odd things at the target path; each must leave the previous
checkpoint intact (byte for byte) and no temporary file, and raise the original error.
Loading: truncation at every offset, a bit flipped at every offset, lying .npy headers,
planted pickles (whose execution would create a marker file), other tools' files,
compressed, encrypted, duplicated, missing and unexpected members, and a tampered index
(CRCs recomputed, as an attacker would); each must raise CheckpointError and run no code.
Tampered files are built with the standard library's zipfile, an independent writer.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

import portopt
from portopt import CheckpointError, checkpoint

OLD = {"w": np.full(64, 1.0), "epoch": 1, "lr": 0.1}
NEW = {"w": np.full(64, 2.0), "epoch": 2, "lr": 0.05}


def _same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert a[key].dtype == b[key].dtype
            np.testing.assert_array_equal(a[key], b[key])
        else:
            assert type(a[key]) is type(b[key]) and a[key] == b[key]


@pytest.fixture
def old(tmp_path):
    """A folder holding one checkpoint of OLD, and that file's bytes."""
    path = tmp_path / "ckpt.npz"
    portopt.save(OLD, path)
    return path, path.read_bytes()


def _intact(path, data):
    """The previous checkpoint is untouched and alone in its folder: no temporary file."""
    assert path.read_bytes() == data
    _same(portopt.load(path), OLD)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


# -- the writer killed -----------------------------------------------------------------

KILLER = textwrap.dedent("""
    import io, os, signal, sys
    import numpy as np
    import portopt

    when, path = sys.argv[1], sys.argv[2]

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if when == "mid-data":
        class Dying(io.FileIO):
            written = 0

            def write(self, data):
                n = super().write(data)
                Dying.written += n
                if Dying.written > 3_000_000:  # of about 8 MB
                    die()
                return n

        os.fdopen = lambda fd, *args, **kwargs: io.BufferedWriter(Dying(fd, "wb"))
    elif when == "before-fsync":
        os.fsync = die
    elif when == "before-replace":
        os.replace = die
    elif when == "after-replace":
        real_replace = os.replace

        def replace_then_die(src, dst):
            real_replace(src, dst)
            die()

        os.replace = replace_then_die
    portopt.save({"w": np.full(1_000_000, 2.0), "epoch": 2}, path)
    print("not killed")
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="no SIGKILL on this platform")
@pytest.mark.parametrize("when", ["mid-data", "before-fsync", "before-replace", "after-replace"])
def test_a_writer_killed_mid_save_leaves_the_old_or_the_new_checkpoint(when, tmp_path):
    path = tmp_path / "ckpt.npz"
    old_obj = {"w": np.full(1_000_000, 1.0), "epoch": 1}
    portopt.save(old_obj, path)
    before = path.read_bytes()
    run = subprocess.run([sys.executable, "-c", KILLER, when, str(path)], capture_output=True,
                         text=True, cwd=os.getcwd())
    assert run.returncode == -signal.SIGKILL, run.stdout + run.stderr
    loaded = portopt.load(path)
    leftovers = sorted(tmp_path.glob(".ckpt.npz.*.tmp"))
    if when == "after-replace":
        assert loaded["epoch"] == 2 and np.all(loaded["w"] == 2.0)
        assert leftovers == []
        return
    assert path.read_bytes() == before
    assert loaded["epoch"] == 1 and np.all(loaded["w"] == 1.0)
    # a killed writer cannot clean up: its temporary file is either cut short, and then
    # refused, or complete (killed after the last write), and then the new object whole
    (leftover,) = leftovers
    if when == "mid-data":
        with pytest.raises(CheckpointError, match="truncated"):
            portopt.load(leftover)
    else:
        new = portopt.load(leftover)
        assert new["epoch"] == 2 and np.all(new["w"] == 2.0)


# -- the file system failing in-process ------------------------------------------------


class _Disk(io.FileIO):
    """A file that takes ``budget`` bytes and then raises ``error`` (a short write first,
    as a filling disk gives)."""

    def __init__(self, fd, budget, error):
        super().__init__(fd, "wb")
        self.left, self.error = budget, error

    def write(self, data):
        view = memoryview(data).cast("B")
        if len(view) > self.left:
            if self.left:
                n = super().write(view[:self.left])
                self.left -= n
                return n
            raise self.error
        self.left -= len(view)
        return super().write(view)


def _new_size(tmp_path):
    probe = tmp_path / "probe" / "ckpt.npz"
    probe.parent.mkdir()
    portopt.save(NEW, probe)
    size = probe.stat().st_size
    probe.unlink()
    probe.parent.rmdir()
    return size


@pytest.mark.parametrize("where", ["first-byte", "index", "array", "directory", "end-record"])
def test_a_full_disk_keeps_the_old_checkpoint_and_its_errno(where, old, tmp_path, monkeypatch):
    path, before = old
    size = _new_size(tmp_path)
    budget = {"first-byte": 0, "index": 60, "array": size // 2, "directory": size - 60,
              "end-record": size - 5}[where]
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: io.BufferedWriter(
        _Disk(fd, budget, full), buffer_size=16))
    with pytest.raises(OSError) as info:
        portopt.save(NEW, path)
    assert info.value is full and info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    _intact(path, before)


def test_an_interrupt_mid_write_keeps_the_old_checkpoint(old, tmp_path, monkeypatch):
    path, before = old
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: io.BufferedWriter(
        _Disk(fd, 200, KeyboardInterrupt()), buffer_size=16))
    with pytest.raises(KeyboardInterrupt):
        portopt.save(NEW, path)
    monkeypatch.undo()
    _intact(path, before)


def test_a_failing_fsync_keeps_the_old_checkpoint(old, monkeypatch):
    path, before = old

    def fsync(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError) as info:
        portopt.save(NEW, path)
    assert info.value.errno == errno.EIO
    monkeypatch.undo()
    _intact(path, before)


@pytest.mark.parametrize("code", [errno.EXDEV, errno.EACCES, errno.EBUSY])
def test_a_failing_rename_keeps_the_old_checkpoint(code, old, monkeypatch):
    path, before = old
    replaced = []

    def replace(src, dst):
        replaced.append((os.path.basename(src), os.path.basename(dst)))
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError) as info:
        portopt.save(NEW, path)
    assert info.value.errno == code
    ((src, dst),) = replaced
    assert src.startswith(".ckpt.npz.") and src.endswith(".tmp") and dst == "ckpt.npz"
    monkeypatch.undo()
    _intact(path, before)


def test_a_failing_folder_sync_is_raised_after_the_new_file_is_in_place(old, monkeypatch):
    path, _ = old
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError) as info:
        portopt.save(NEW, path)
    assert info.value.errno == errno.EIO
    monkeypatch.undo()
    _same(portopt.load(path), NEW)
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.npz"]


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_a_read_only_folder_keeps_the_old_checkpoint(code, old, monkeypatch):
    # as root, chmod does not stop writes: the error the kernel gives a non-root writer
    # (EACCES) or any writer on a read-only mount (EROFS) is raised where the temp file opens
    path, before = old
    real_open = os.open

    def open_(name, flags, *args, **kwargs):
        if str(name).endswith(".tmp"):
            raise OSError(code, os.strerror(code), name)
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    with pytest.raises(OSError) as info:
        portopt.save(NEW, path)
    assert info.value.errno == code
    assert isinstance(info.value, PermissionError) == (code == errno.EACCES)
    monkeypatch.undo()
    _intact(path, before)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="needs a non-root POSIX user: chmod does not stop root from writing")
def test_a_chmod_read_only_folder_keeps_the_old_checkpoint(old):
    path, before = old
    folder = path.parent
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError):
            portopt.save(NEW, path)
    finally:
        folder.chmod(0o755)
    _intact(path, before)


def test_a_directory_at_the_path_is_left_alone(tmp_path):
    target = tmp_path / "ckpt.npz"
    target.mkdir()
    (target / "inside").write_text("keep")
    with pytest.raises(IsADirectoryError):
        portopt.save(NEW, target)
    assert (target / "inside").read_text() == "keep"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_a_fifo_is_neither_replaced_nor_read(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        portopt.save(NEW, fifo)
    with pytest.raises(CheckpointError, match="not a regular file"):
        portopt.load(fifo)  # would block forever if it were opened
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_saving_through_a_symlink_replaces_its_target_and_keeps_the_link(old, tmp_path):
    path, _ = old
    link = tmp_path / "latest.npz"
    link.symlink_to(path.name)
    portopt.save(NEW, link)
    assert link.is_symlink() and os.readlink(link) == path.name
    _same(portopt.load(path), NEW)
    dangling = tmp_path / "next.npz"
    dangling.symlink_to("sub-target.npz")
    portopt.save(OLD, dangling)
    assert dangling.is_symlink()
    _same(portopt.load(tmp_path / "sub-target.npz"), OLD)
    assert not list(tmp_path.glob(".*.tmp"))


def test_replacing_keeps_the_permission_bits(old):
    path, _ = old
    path.chmod(0o600)
    portopt.save(NEW, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# -- damaged files ---------------------------------------------------------------------

SMALL = {"lr": 0.5, "w": np.array([1.0, -2.0], np.float32)}


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.npz"
    portopt.save(SMALL, path)
    return path.read_bytes()


def _load_bytes(tmp_path, data, name="damaged.npz"):
    path = tmp_path / name
    path.write_bytes(data)
    return portopt.load(path)


def test_truncation_at_every_offset_is_refused(small, tmp_path):
    for n in range(len(small)):
        with pytest.raises(CheckpointError) as info:
            _load_bytes(tmp_path, small[:n])
        assert ("truncated" in str(info.value) or "empty" in str(info.value)
                or "not a ZIP archive" in str(info.value)), (n, str(info.value))


@pytest.mark.parametrize("extra", [b"\0", b"PK\x05\x06" + bytes(18), b"x" * 1000],
                         ids=["one-byte", "fake-end-record", "kilobyte"])
def test_trailing_bytes_are_refused(extra, small, tmp_path):
    with pytest.raises(CheckpointError):
        _load_bytes(tmp_path, small + extra)
    with pytest.raises(CheckpointError):
        _load_bytes(tmp_path, small + small)


def test_prepended_bytes_are_refused(small, tmp_path):
    # a self-extracting stub: ZIP readers that search for the archive would accept it
    with pytest.raises(CheckpointError, match="not a ZIP archive"):
        _load_bytes(tmp_path, b"#!/bin/sh\nexit 0\n" + small)
    with pytest.raises(CheckpointError, match="truncated or damaged: the ZIP central "
                                              "directory is not where the end record puts it"):
        _load_bytes(tmp_path, b"PK\x03\x04" + bytes(26) + small)


def _metadata_offsets(data):
    """Offsets of the ZIP fields no reader checks (APPNOTE 4.3.7, 4.3.12): versions, DOS
    time and date, and the central directory's file attributes."""
    end = len(data) - 22
    count, _, directory = struct.unpack("<HII", data[end + 10:end + 20])
    offsets, at = set(), directory
    for _ in range(count):
        n_name, n_extra, n_comment = struct.unpack("<3H", data[at + 28:at + 34])
        offsets |= set(range(at + 4, at + 8)) | set(range(at + 12, at + 16))
        offsets |= set(range(at + 36, at + 42))
        local = struct.unpack("<I", data[at + 42:at + 46])[0]
        offsets |= {local + 4, local + 5} | set(range(local + 10, local + 14))
        at += 46 + n_name + n_extra + n_comment
    return offsets


def test_a_bit_flipped_at_every_offset_is_refused_or_harmless(small, tmp_path):
    unprotected = _metadata_offsets(small)
    loaded_at = set()
    for offset in range(len(small)):
        for mask in (1 << (offset % 8), 0xFF):
            damaged = bytearray(small)
            damaged[offset] ^= mask
            try:
                back = _load_bytes(tmp_path, bytes(damaged))
            except CheckpointError:
                continue
            assert offset in unprotected, offset
            loaded_at.add(offset)
            assert type(back["lr"]) is float and back["lr"] == 0.5
            np.testing.assert_array_equal(back["w"], SMALL["w"])
            assert back["w"].dtype == np.float32
    assert loaded_at  # the metadata fields exist, and changing them changes nothing


def test_a_flipped_data_bit_is_named_as_a_crc_failure(small, tmp_path):
    with zipfile.ZipFile(io.BytesIO(small)) as archive:
        info = archive.getinfo("arr_0.npy")
    data_at = info.header_offset + 30 + len(info.filename) + len(info.extra)
    damaged = bytearray(small)
    damaged[data_at + info.file_size - 1] ^= 0x40  # the last byte of the array data
    with pytest.raises(CheckpointError, match="'arr_0.npy' fails its CRC-32 check"):
        _load_bytes(tmp_path, bytes(damaged))


# -- tampered files (CRCs recomputed) --------------------------------------------------


def _members(data):
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def _pack(members, compressed=None, method=zipfile.ZIP_STORED):
    """A ZIP archive of ``members``, all stored but ``compressed`` (by ``method``)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members:
            archive.writestr(name, data, method if name == compressed else zipfile.ZIP_STORED)
    return out.getvalue()


def _with_index(data, edit):
    """The archive with its portopt.json replaced by ``edit(doc)`` (a dict, or bytes)."""
    members = _members(data)
    doc = json.loads(dict(members)["portopt.json"])
    new = edit(doc)
    raw = new if isinstance(new, bytes) else json.dumps(new).encode()
    return _pack([(n, raw if n == "portopt.json" else d) for n, d in members])


def _with_member(data, name, raw, method=zipfile.ZIP_STORED):
    return _pack([(n, raw if n == name else d) for n, d in _members(data)], name, method)


def _set_array(doc, **fields):
    doc["object"]["dict"][1][1]["array"].update(fields)
    return doc


def _nested(depth):
    node = 0
    for _ in range(depth):
        node = {"list": [node]}
    return node


def _npy(shape, descr="<f4", data=b"", fortran=False):
    header = repr({"descr": descr, "fortran_order": fortran, "shape": tuple(shape)})
    header = header.encode("latin-1") + b" " * (118 - len(header)) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


INDEX_EDITS = {
    "no-marker": (lambda d: {k: v for k, v in d.items() if k != "format"},
                  "portopt.json has no format marker"),
    "unknown-format": (lambda d: {**d, "format": "other.checkpoint"},
                       "unknown format 'other.checkpoint'"),
    "future-version": (lambda d: {**d, "version": 2},
                       "format version 2 (this portopt reads version 1)"),
    "string-version": (lambda d: {**d, "version": "1"}, "has no format version"),
    "extra-key": (lambda d: {**d, "code": "print(1)"}, "has keys"),
    "not-an-object": (lambda d: [d], "is not a JSON object"),
    "not-json": (lambda d: b'{"format": "portopt.checkpoint", ', "is not valid JSON"),
    "not-utf8": (lambda d: b'{"format": "\xff"}', "is not UTF-8 text"),
    "nan-literal": (lambda d: b'{"format": NaN}', "NaN is not JSON"),
    "duplicate-json-key": (lambda d: b'{"format": 1, "format": 2}', "appears twice"),
    "huge-int": (lambda d: ('{"object": ' + "9" * 5000 + "}").encode(), "is not valid JSON"),
    "bare-float": (lambda d: {**d, "object": 1.5}, "obj: an untagged JSON number"),
    "bare-list": (lambda d: {**d, "object": [1]}, "obj: an untagged JSON list"),
    "two-tags": (lambda d: {**d, "object": {"list": [], "tuple": []}}, "exactly one tag"),
    "unknown-tag": (lambda d: {**d, "object": {"pickle": "gASVCAAAAAAAAAB9lC4="}},
                    "unknown tag 'pickle'"),
    "float-key": (lambda d: {**d, "object": {"dict": [[1.5, 1]]}},
                  "the key 1.5 is a JSON number"),
    "bool-key": (lambda d: {**d, "object": {"dict": [[True, 1]]}},
                 "the key True is a JSON boolean"),
    "null-key": (lambda d: {**d, "object": {"dict": [[None, 1]]}},
                 "the key None is a JSON null"),
    "list-key": (lambda d: {**d, "object": {"dict": [[[1], 1]]}}, "is a JSON list"),
    "duplicate-key": (lambda d: {**d, "object": {"dict": [["a", 1], ["a", 2]]}},
                      "obj: the key 'a' appears twice"),
    "not-a-pair": (lambda d: {**d, "object": {"dict": [["a", 1, 2]]}}, "[key, value] pair"),
    "float-underscores": (lambda d: {**d, "object": {"float": "1_0.0"}}, "is not a float"),
    "float-hex": (lambda d: {**d, "object": {"float": "0x1p3"}}, "is not a float"),
    "float-space": (lambda d: {**d, "object": {"float": " 1.0"}}, "is not a float"),
    "float-nan-bits-not-nan": (lambda d: {**d, "object": {"float": "nan:3ff0000000000000"}},
                               "is not a float"),
    "too-deep": (lambda d: {**d, "object": _nested(checkpoint.MAX_DEPTH + 1)},
                 "nested deeper than the cap of 100"),
    "too-deep-to-parse": (lambda d: b'{"object": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                          "nested too deeply to parse"),
    "dtype-object": (lambda d: _set_array(d, dtype="object"), "unknown dtype 'object'"),
    "dtype-other": (lambda d: _set_array(d, dtype="float64"),
                    "its .npy dtype '<f4' is not '<f8'"),
    "shape-other": (lambda d: _set_array(d, shape=[3]),
                    "its .npy shape (2,) is not the index's (3,)"),
    "shape-negative": (lambda d: _set_array(d, shape=[-2]), "bad shape [-2]"),
    "shape-bool": (lambda d: _set_array(d, shape=[True, True]), "bad shape [True, True]"),
    "shape-huge": (lambda d: _set_array(d, shape=[0, 2**40, 2**40]), "is too large"),
    "scalar-with-shape": (lambda d: _set_array(d, scalar=True), "bad scalar flag True"),
    "array-extra-key": (lambda d: _set_array(d, code="x"), "must have exactly the keys"),
    "member-missing": (lambda d: _set_array(d, member="arr_9.npy"),
                       "its member 'arr_9.npy' is missing from the archive"),
    "member-is-index": (lambda d: _set_array(d, member="portopt.json"), "bad member name"),
    "member-twice": (lambda d: {**d, "object": {"list": [d["object"], d["object"]]}},
                     "its member 'arr_0.npy' is also obj[0]['w']"),
    "member-unreferenced": (lambda d: {**d, "object": {"float": "1.0"}},
                            "unexpected member 'arr_0.npy'"),
}


@pytest.mark.parametrize("edit,message", INDEX_EDITS.values(), ids=INDEX_EDITS.keys())
def test_a_tampered_index_is_refused_by_name(edit, message, small, tmp_path):
    with pytest.raises(CheckpointError) as info:
        _load_bytes(tmp_path, _with_index(small, edit))
    assert message in str(info.value), str(info.value)
    assert str(info.value).startswith(str(tmp_path / "damaged.npz") + ": ")


def test_an_index_over_its_cap_is_refused_unread(small, tmp_path):
    padded = lambda d: json.dumps(d).encode() + b" " * checkpoint.MAX_JSON_BYTES  # noqa: E731
    with pytest.raises(CheckpointError, match="more than the cap of 16777216"):
        _load_bytes(tmp_path, _with_index(small, padded))


MEMBER_EDITS = {
    "header-claims-gigabytes": (
        lambda d: _with_index(_with_member(d, "arr_0.npy", _npy((2**28,), "<f8", bytes(8))),
                              lambda doc: _set_array(doc, shape=[2**28], dtype="float64")),
        "holds 8 bytes of data, but its header promises 2147483648"),
    "header-disagrees-with-index": (
        lambda d: _with_member(d, "arr_0.npy", _npy((2**28,), "<f8", bytes(8))),
        "its .npy dtype '<f8' is not '<f4'"),
    "fortran-order": (lambda d: _with_member(d, "arr_0.npy", _npy((2,), "<f4", bytes(8),
                                                                   fortran=True)),
                      "Fortran order"),
    "big-endian": (lambda d: _with_member(d, "arr_0.npy", _npy((2,), ">f4", bytes(8))),
                   "its .npy dtype '>f4' is not '<f4'"),
    "header-not-a-literal": (lambda d: _with_member(
        d, "arr_0.npy", _npy((2,), "<f4", bytes(8)).replace(b"'descr'", b"descr()")),
        "not a Python literal"),
    "header-runs-past-member": (lambda d: _with_member(d, "arr_0.npy", b"\x93NUMPY\x01\x00"
                                                       b"\xff\x0f{}"),
                                "a .npy header of 4095 bytes in a member of 12"),
    "unknown-npy-version": (lambda d: _with_member(d, "arr_0.npy", b"\x93NUMPY\x09\x00" +
                                                   bytes(8)),
                            "unknown .npy version (9, 0)"),
    "not-npy": (lambda d: _with_member(d, "arr_0.npy", b"just text, no magic"),
                "is not a .npy array"),
    "extra-member": (lambda d: _pack(_members(d) + [("evil.py", b"import os")]),
                     "unexpected member 'evil.py'"),
    "missing-member": (lambda d: _pack([m for m in _members(d) if m[0] != "arr_0.npy"]),
                       "its member 'arr_0.npy' is missing from the archive"),
    "missing-index": (lambda d: _pack([m for m in _members(d) if m[0] != "portopt.json"]),
                      "a plain NumPy .npz archive"),
}


@pytest.mark.parametrize("make,message", MEMBER_EDITS.values(), ids=MEMBER_EDITS.keys())
def test_a_tampered_member_is_refused_by_name_without_allocating(make, message, small,
                                                                  tmp_path):
    data = make(small)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError) as info:
            _load_bytes(tmp_path, data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert message in str(info.value), str(info.value)
    assert peak < 2**20, peak  # a claimed 2 GiB is never allocated


def test_duplicate_members_are_refused(small, tmp_path):
    members = _members(small)
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = _pack(members + [members[1]])
    with pytest.raises(CheckpointError, match="member 'arr_0.npy' appears twice"):
        _load_bytes(tmp_path, data)


def test_overlapping_members_are_refused(small, tmp_path):
    # point arr_0.npy's directory entry at the index's local header: one byte range, two names
    data = bytearray(small)
    end = len(data) - 22
    directory = struct.unpack("<I", data[end + 16:end + 20])[0]
    n_name, n_extra = struct.unpack("<2H", data[directory + 28:directory + 32])
    second = directory + 46 + n_name + n_extra
    data[second + 42:second + 46] = struct.pack("<I", 0)
    with pytest.raises(CheckpointError, match="members overlap"):
        _load_bytes(tmp_path, bytes(data))


@pytest.mark.parametrize("method,size", [(zipfile.ZIP_DEFLATED, 16 * 2**20),
                                         (zipfile.ZIP_BZIP2, 2**20)], ids=["deflate", "bzip2"])
def test_a_compressed_member_like_a_zip_bomb_is_refused_uninflated(method, size, small,
                                                                   tmp_path):
    member = _npy((size // 4,), "<f4", bytes(size))  # zeros: a kilobyte per megabyte packed
    data = _with_member(_with_index(small, lambda doc: _set_array(doc, shape=[size // 4])),
                        "arr_0.npy", member, method)
    del member
    assert len(data) < size // 100
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError) as info:
            _load_bytes(tmp_path, data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    name = {zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2"}[method]
    assert f"member 'arr_0.npy' is compressed ({name})" in str(info.value)
    assert peak < 2**20, peak


def test_an_encrypted_member_is_refused(small, tmp_path):
    data = bytearray(small)
    with zipfile.ZipFile(io.BytesIO(small)) as archive:
        info = archive.getinfo("arr_0.npy")
    data[info.header_offset + 6] |= 1  # general purpose flag bit 0: encrypted
    end = len(data) - 22
    at = struct.unpack("<I", data[end + 16:end + 20])[0]
    while data[at + 46:at + 46 + 9] != b"arr_0.npy":
        n_name, n_extra, n_comment = struct.unpack("<3H", data[at + 28:at + 34])
        at += 46 + n_name + n_extra + n_comment
    data[at + 8] |= 1
    with pytest.raises(CheckpointError, match="member 'arr_0.npy' is encrypted"):
        _load_bytes(tmp_path, bytes(data))


def test_sparse_indices_out_of_range_are_refused_before_building(tmp_path):
    grad = portopt.SparseGrad(np.array([[0, 3]]), np.array([1.0, 2.0]), (4,))
    path = tmp_path / "sparse.npz"
    portopt.save({"g": grad}, path)
    members = _members(path.read_bytes())
    bad = io.BytesIO()
    np.save(bad, np.array([[0, 4]]), allow_pickle=False)
    data = _pack([(n, bad.getvalue() if n == "arr_0.npy" else d) for n, d in members])
    with pytest.raises(CheckpointError, match=r"obj\['g'\]: index 4 of dimension 0 lies "
                                              "outside its size 4"):
        _load_bytes(tmp_path, data)

    def float_indices(doc):
        doc["object"]["dict"][0][1]["sparse"]["indices"]["dtype"] = "float64"
        return doc

    with pytest.raises(CheckpointError, match="do not make a sparse COO array"):
        _load_bytes(tmp_path, _with_index(path.read_bytes(), float_indices))


# -- planted pickles -------------------------------------------------------------------


class _Plant:
    """Unpickling this creates ``marker``: the proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _object_npy(marker):
    out = io.BytesIO()
    np.lib.format.write_array(out, np.array([_Plant(marker)], dtype=object), allow_pickle=True)
    return out.getvalue()


@pytest.fixture
def marker(tmp_path, monkeypatch):
    """A marker path, proven to be created by the payload when something unpickles it;
    pickle itself is disarmed while portopt loads, so any call to it fails the test."""
    path = tmp_path / "pwned"
    np.load(io.BytesIO(_object_npy(path)), allow_pickle=True)  # the payload is live
    assert path.exists()
    path.unlink()

    def disarmed(*args, **kwargs):
        raise AssertionError("pickle was called")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, disarmed)
    yield path
    assert not path.exists()


def _planted(kind, marker, small):
    payload = pickle.dumps(_Plant(marker))  # the real pickle module: the fixture disarms load
    if kind == "object-dtype-member":
        return _with_member(small, "arr_0.npy", _object_npy(marker))
    if kind == "object-dtype-member-and-index":
        return _with_index(_with_member(small, "arr_0.npy", _object_npy(marker)),
                           lambda doc: _set_array(doc, dtype="object"))
    if kind == "pickle-as-npy":
        return _with_member(small, "arr_0.npy", payload)
    if kind == "pickle-as-json":
        return _with_member(small, "portopt.json", payload)
    if kind == "pickle-file":
        return payload
    if kind == "object-npz":
        out = io.BytesIO()
        np.savez(out, evil=np.array([_Plant(marker)], dtype=object))
        return out.getvalue()
    if kind == "object-npy":
        return _object_npy(marker)
    torch = pytest.importorskip("torch", reason="torch is not installed")
    out = io.BytesIO()
    torch.save({"state": _Plant(marker)}, out)
    return out.getvalue()


PLANTED = {
    "object-dtype-member": "has an object dtype, whose data is a pickle",
    "object-dtype-member-and-index": "unknown dtype 'object'",
    "pickle-as-npy": "member 'arr_0.npy' is a pickle",
    "pickle-as-json": "portopt.json is not",
    "pickle-file": "it is a pickle",
    "object-npz": "a plain NumPy .npz archive",
    "object-npy": "a single .npy array",
    "torch-save": "it is a torch.save file",
}


@pytest.mark.parametrize("kind", PLANTED)
def test_a_planted_pickle_is_refused_and_never_runs(kind, marker, small, tmp_path):
    data = _planted(kind, marker, small)
    with pytest.raises(CheckpointError) as info:
        _load_bytes(tmp_path, data)
    assert PLANTED[kind] in str(info.value), str(info.value)
    assert not marker.exists()


def test_the_torch_save_payload_is_live(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state": _Plant(marker)}, path)
    torch.load(path, weights_only=False)  # what portopt.load must never do
    assert marker.exists()


# -- other tools' files ----------------------------------------------------------------


def _safetensors():
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    return struct.pack("<Q", len(header)) + header + bytes(8)


def _foreign(kind):
    out = io.BytesIO()
    if kind == "npz":
        np.savez(out, w=np.zeros(3))
    elif kind == "npz-compressed":
        np.savez_compressed(out, w=np.zeros(3))
    elif kind == "npy":
        np.save(out, np.zeros(3))
    elif kind in ("torch-zip", "torch-legacy"):
        torch = pytest.importorskip("torch", reason="torch is not installed")
        torch.save({"w": torch.zeros(3)}, out,
                   _use_new_zipfile_serialization=kind == "torch-zip")
    elif kind == "zip-of-text":
        with zipfile.ZipFile(out, "w") as archive:
            archive.writestr("notes.txt", "hello")
    elif kind == "empty-zip":
        zipfile.ZipFile(out, "w").close()
    else:
        return {"safetensors": _safetensors(),
                "png": b"\x89PNG\r\n\x1a\n" + bytes(32),
                "text": b"epoch,loss\n1,0.5\n" * 10,
                "empty": b"",
                "gzip": zlib.compressobj(wbits=31).compress(b"x") + b"\0" * 40,
                "random": bytes(np.random.default_rng(0).integers(0, 256, 200, np.uint8))}[kind]
    return out.getvalue()


FOREIGN = {
    "npz": "a plain NumPy .npz archive",
    "npz-compressed": "a plain NumPy .npz archive",
    "npy": "it is a single .npy array",
    "torch-zip": "it is a torch.save file",
    "torch-legacy": "it is a pickle",
    "zip-of-text": "a ZIP archive without a portopt.json member",
    "empty-zip": "an empty ZIP archive",
    "safetensors": "it is a safetensors file",
    "png": "it is a PNG image",
    "text": "it is text, not a ZIP archive",
    "empty": "the file is empty",
    "gzip": "it is gzip-compressed data",
    "random": "not a ZIP archive",
}


@pytest.mark.parametrize("kind", FOREIGN)
def test_other_tools_files_are_named_and_refused(kind, tmp_path):
    with pytest.raises(CheckpointError) as info:
        _load_bytes(tmp_path, _foreign(kind), name="foreign.bin")
    assert str(info.value).startswith(f"{tmp_path / 'foreign.bin'}: not a portopt checkpoint")
    assert FOREIGN[kind] in str(info.value), str(info.value)


def test_float_text_never_reaches_eval(small, tmp_path):
    # the float tag is parsed by float() after a strict pattern: an expression is text
    expr = "__import__('os').system('true')"
    with pytest.raises(CheckpointError, match="is not a float"):
        _load_bytes(tmp_path, _with_index(small, lambda d: {**d, "object": {"float": expr}}))
