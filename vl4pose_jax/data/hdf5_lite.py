"""A minimal, dependency-free reader for simple HDF5 files (Newell's MPII `valid.h5`/`annot.h5`).

`read_hdf5(path) -> {name: np.ndarray}` returns every dataset in the file's root group. It uses
`h5py` when that is installed; otherwise it parses the file itself, supporting exactly what the
stacked-hourglass annotation files use: superblock version 0/1, "old-style" groups (symbol
tables over a version-1 B-tree and a local heap), version-1 object headers (with continuation
blocks), contiguous or compact storage without filters, and fixed-point, floating-point and
fixed-length string element types. Anything else (chunked/compressed data, variable-length
strings, superblock v2+) raises `NotImplementedError` naming the feature, so a file outside that
subset fails loudly instead of being misread; install `h5py` to read such files.
"""
from __future__ import annotations

import os
import struct

import numpy as np

_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_UNDEFINED = 0xFFFFFFFFFFFFFFFF


def read_hdf5(path) -> dict[str, np.ndarray]:
    """All datasets in the root group of an HDF5 file, as numpy arrays (h5py if available)."""
    path = os.fspath(path)
    try:
        import h5py  # pylint: disable=import-outside-toplevel
    except ImportError:
        h5py = None
    if h5py is not None:
        with h5py.File(path, "r") as f:
            return {k: np.asarray(v[()]) for k, v in f.items() if isinstance(v, h5py.Dataset)}
    with open(path, "rb") as f:
        buf = f.read()
    return _Reader(buf, path).root_datasets()


class _Reader:
    def __init__(self, buf: bytes, path: str):
        self.buf, self.path = buf, path
        base = buf.find(_SIGNATURE)
        if base != 0:
            raise ValueError(f"{path}: not an HDF5 file (no signature at offset 0)")
        version = buf[8]
        if version not in (0, 1):
            raise NotImplementedError(f"{path}: HDF5 superblock version {version} (install h5py)")
        self.so, self.sl = buf[13], buf[14]
        if self.so != 8 or self.sl != 8:
            raise NotImplementedError(f"{path}: offset/length sizes {self.so}/{self.sl}")
        pos = 24 if version == 0 else 28
        pos += 4 * 8  # base, free-space, end-of-file, driver-info addresses
        self.root_entry = pos

    def _u(self, pos, n):
        return int.from_bytes(self.buf[pos:pos + n], "little")

    def root_datasets(self):
        header = self._u(self.root_entry + 8, 8)
        messages = self._messages(header)
        symtab = [m for t, m in messages if t == 0x11]
        if not symtab:
            raise NotImplementedError(f"{self.path}: root group is not an old-style symbol table")
        btree, heap = self._u(symtab[0], 8), self._u(symtab[0] + 8, 8)
        heap_data = self._heap_data(heap)
        out = {}
        for name_off, obj in self._group_entries(btree):
            end = self.buf.index(b"\x00", heap_data + name_off)
            name = self.buf[heap_data + name_off:end].decode()
            value = self._dataset(obj, name)
            if value is not None:
                out[name] = value
        return out

    def _heap_data(self, addr):
        if self.buf[addr:addr + 4] != b"HEAP":
            raise ValueError(f"{self.path}: bad local heap at {addr}")
        return self._u(addr + 24, 8)

    def _group_entries(self, addr):
        sig = self.buf[addr:addr + 4]
        if sig == b"SNOD":
            count = self._u(addr + 6, 2)
            for i in range(count):
                e = addr + 8 + 40 * i
                yield self._u(e, 8), self._u(e + 8, 8)
            return
        if sig != b"TREE":
            raise ValueError(f"{self.path}: bad B-tree node at {addr}")
        entries = self._u(addr + 6, 2)
        pos = addr + 24 + 8  # header, then key 0
        for _ in range(entries):
            child = self._u(pos, 8)
            yield from self._group_entries(child)
            pos += 16

    def _messages(self, addr):
        if self.buf[addr] != 1:
            raise NotImplementedError(
                f"{self.path}: object header version {self.buf[addr]} at {addr} (install h5py)")
        count = self._u(addr + 2, 2)
        blocks = [(addr + 16, self._u(addr + 8, 4))]
        out = []
        while blocks and len(out) < count:
            pos, size = blocks.pop(0)
            end = pos + size
            while pos + 8 <= end and len(out) < count:
                mtype, msize = self._u(pos, 2), self._u(pos + 2, 2)
                body = pos + 8
                if mtype == 0x10:  # continuation
                    blocks.append((self._u(body, 8), self._u(body + 8, 8)))
                out.append((mtype, body))
                pos = body + msize
        return out

    def _dataset(self, addr, name):
        msgs = dict()
        for t, body in self._messages(addr):
            msgs.setdefault(t, body)
        if 0x0003 not in msgs or 0x0001 not in msgs or 0x0008 not in msgs:
            return None  # a group or something else: not a plain dataset
        if 0x000B in msgs:
            raise NotImplementedError(f"{self.path}: dataset {name!r} is filtered/compressed "
                                      "(install h5py)")
        shape = self._dataspace(msgs[0x0001])
        dtype = self._datatype(msgs[0x0003], name)
        data_addr, nbytes = self._layout(msgs[0x0008], name)
        count = int(np.prod(shape, dtype=np.int64))
        if data_addr == _UNDEFINED:
            return np.zeros(shape, dtype)
        raw = self.buf[data_addr:data_addr + count * dtype.itemsize]
        if len(raw) != count * dtype.itemsize:
            raise ValueError(f"{self.path}: dataset {name!r} is truncated")
        return np.frombuffer(raw, dtype).reshape(shape).copy()

    def _dataspace(self, body):
        version, rank, flags = self.buf[body], self.buf[body + 1], self.buf[body + 2]
        pos = body + (8 if version == 1 else 4)
        return tuple(self._u(pos + 8 * i, 8) for i in range(rank))

    def _datatype(self, body, name):
        cls = self.buf[body] & 0x0F
        bits = self.buf[body + 1]
        size = self._u(body + 4, 4)
        order = ">" if bits & 1 else "<"
        if cls == 0:
            return np.dtype(f"{order}{'i' if bits & 8 else 'u'}{size}")
        if cls == 1:
            return np.dtype(f"{order}f{size}")
        if cls == 3:
            return np.dtype(f"S{size}")
        raise NotImplementedError(f"{self.path}: dataset {name!r} has HDF5 type class {cls} "
                                  "(install h5py)")

    def _layout(self, body, name):
        version = self.buf[body]
        if version == 3:
            cls = self.buf[body + 1]
            if cls == 1:
                return self._u(body + 2, 8), self._u(body + 10, 8)
            if cls == 0:
                return body + 4, self._u(body + 2, 2)
        elif version in (1, 2):
            rank, cls = self.buf[body + 1], self.buf[body + 2]
            if cls == 1:
                return self._u(body + 8, 8), None
            if cls == 0:
                return body + 8 + 4 * rank + 4, self._u(body + 8 + 4 * rank, 4)
        raise NotImplementedError(f"{self.path}: dataset {name!r} uses an unsupported storage "
                                  f"layout (version {version}; install h5py)")
