"""Compact string columns for file-backed sets: image paths and captions without a Python object per row.

A FLYP TSV of ImageNet holds one row per image x template. As Python lists, every row costs a path and a
caption ``str`` (50-150 B each) plus list slots: GBs for a few million rows. DataLoader workers (fork) that
read those strings touch their reference counts, so the pages they live on get copied into every worker.

A :class:`StringColumn` is dictionary-encoded, as an Arrow dictionary array is: the distinct values once, as
one UTF-8 ``bytes`` buffer with int64 offsets, and one int32 code per row. Paths repeat once per template and
captions once per image of a class, so N rows cost 4 N bytes plus the distinct values, in three objects whose
pages no row access writes. Values round-trip exactly, undecodable file names included (surrogateescape).
"""
from __future__ import annotations

from array import array
from typing import Iterable, Iterator, Sequence

import numpy as np

_ENC = ("utf-8", "surrogateescape")      # os.listdir's file names may hold undecodable bytes


class StringColumn(Sequence):
    """Read-only sequence of str: ``col[i]`` -> str, ``col[slice or int array]`` -> StringColumn (shared buffer).

    Compares equal to a list / tuple / StringColumn with the same values (the list it replaces)."""

    def __init__(self, buffer: bytes, offsets: np.ndarray, codes: np.ndarray):
        self.buffer = buffer                                     # distinct values, UTF-8, concatenated
        self.offsets = np.asarray(offsets, dtype=np.int64)       # (D + 1,) value j = buffer[o[j]:o[j+1]]
        self.codes = np.asarray(codes, dtype=np.int32)           # (N,) distinct-value index of each row

    @classmethod
    def from_distinct(cls, distinct: Sequence[str], codes) -> "StringColumn":
        """Distinct values (D) and the row codes (N,) into them."""
        blobs = [s.encode(*_ENC) for s in distinct]
        offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs)), out=offsets[1:])
        return cls(b"".join(blobs), offsets, codes)

    @classmethod
    def encode(cls, values: Iterable[str]) -> "StringColumn":
        enc = Encoder()
        for v in values:
            enc.add(v)
        return enc.column()

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def n_distinct(self) -> int:
        return len(self.offsets) - 1

    def value(self, j: int) -> str:
        """Distinct value j."""
        return self.buffer[int(self.offsets[j]):int(self.offsets[j + 1])].decode(*_ENC)

    def distinct(self) -> list[str]:
        return [self.value(j) for j in range(self.n_distinct)]

    def __getitem__(self, i):
        if isinstance(i, (int, np.integer)):
            return self.value(int(self.codes[i]))
        return StringColumn(self.buffer, self.offsets, self.codes[i])   # slice / index array: a view

    def __iter__(self) -> Iterator[str]:
        return map(self.distinct().__getitem__, self.codes.tolist())

    def __contains__(self, value) -> bool:
        return self._code(value) is not None

    def index(self, value, start: int = 0, stop: int | None = None) -> int:
        j = self._code(value)
        hits = np.flatnonzero(self.codes[start:stop] == j) if j is not None else ()
        if not len(hits):
            raise ValueError(f"{value!r} is not in the column")
        return start + int(hits[0])

    def _code(self, value) -> int | None:
        """The distinct index of ``value`` (None when absent): only values of its byte length are compared."""
        if not isinstance(value, str):
            return None
        blob = value.encode(*_ENC)
        for j in np.flatnonzero(np.diff(self.offsets) == len(blob)).tolist():
            if self.buffer[int(self.offsets[j]):int(self.offsets[j + 1])] == blob:
                return j
        return None

    def __eq__(self, other) -> bool:
        if isinstance(other, (StringColumn, list, tuple)):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None     # mutable-looking sequence semantics, like the list it replaces

    @property
    def nbytes(self) -> int:
        return len(self.buffer) + self.offsets.nbytes + self.codes.nbytes

    def __repr__(self) -> str:
        return f"StringColumn({len(self)} rows, {self.n_distinct} distinct, {self.nbytes} bytes)"


class Encoder:
    """Builds a StringColumn row by row (a streamed CSV): ``add(value)`` appends one row's code."""

    def __init__(self):
        self._index: dict[str, int] = {}
        self._codes = array("i")          # C int32 per row while reading, not a Python int

    def add(self, value: str) -> None:
        self._codes.append(self._index.setdefault(value, len(self._index)))

    def column(self) -> StringColumn:
        codes = np.frombuffer(self._codes, dtype=f"i{self._codes.itemsize}") if len(self._codes) else ()
        return StringColumn.from_distinct(list(self._index), np.asarray(codes, dtype=np.int32))
