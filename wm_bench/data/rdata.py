"""A pure-Python reader of R's XDR serialization (versions 2, 3): .rds, .rda and lazy-load DBs.

Enough of the format to pull data out of R packages without R: vectors (logical, integer,
double, complex, character, list, raw), pairlists and calls, symbols, environments, S4 objects,
the reference table, and the ALTREP classes R writes for data (compact sequences, wrappers,
deferred strings). Byte code, external pointers' contents and ASCII/native-binary streams are
not supported (they raise ValueError).

Layout (R Internals §1.8 "Serialization formats"): a stream starts with b"X\\n", then three
big-endian int32 (format version, writer's R version, minimal reader version) and, in version 3,
the native encoding's name. Each item opens with an int32 of flags: type = flags & 0xFF,
object bit 8, attribute bit 9, tag bit 10, "levels" (gp bits; the encoding of a CHARSXP) in the
high 20 bits. Vectors store a length (−1: a 64-bit length in two int32 follows) and their
elements; their attributes follow the elements, while a pairlist node stores attributes, tag,
CAR, then its CDR as the next item.

Files: `.rds` is one compressed (gzip, bzip2, xz or none) stream; `.rda`/`.RData` is b"RDX2\\n"
or b"RDX3\\n" then a stream of a pairlist name → object; a package's lazy-load database is
`<base>.rdx` (an .rds of list(variables=, references=, compressed=)) and `<base>.rdb`, whose
blobs at the (offset, length) of each variable are a 4-byte big-endian uncompressed size and
a zlib stream (compressed=TRUE), or one type byte ("1" zlib, "2" bzip2, "Z" xz, "0" none) and
the data (compressed = 2 or 3).
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import lzma
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# SEXP types (R Internals §1.1) and the serialization's pseudo-types.
NILSXP, SYMSXP, LISTSXP, CLOSXP, ENVSXP, PROMSXP, LANGSXP = 0, 1, 2, 3, 4, 5, 6
SPECIALSXP, BUILTINSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, CPLXSXP = 7, 8, 9, 10, 13, 14, 15
STRSXP, DOTSXP, VECSXP, EXPRSXP, BCODESXP, EXTPTRSXP, WEAKREFSXP = 16, 17, 19, 20, 21, 22, 23
RAWSXP, S4SXP = 24, 25
REFSXP, NILVALUE_SXP, GLOBALENV_SXP, UNBOUNDVALUE_SXP, MISSINGARG_SXP = 255, 254, 253, 252, 251
BASENAMESPACE_SXP, NAMESPACESXP, PACKAGESXP, PERSISTSXP = 250, 249, 248, 247
EMPTYENV_SXP, BASEENV_SXP, ATTRLANGSXP, ATTRLISTSXP, ALTREP_SXP = 242, 241, 240, 239, 238
NA_INTEGER = -(2**31)
_PAIRLISTS = (LISTSXP, LANGSXP, CLOSXP, PROMSXP, DOTSXP, ATTRLANGSXP, ATTRLISTSXP)
_SPECIAL_ENVS = {
    GLOBALENV_SXP: "R_GlobalEnv", UNBOUNDVALUE_SXP: "R_UnboundValue",
    MISSINGARG_SXP: "R_MissingArg", BASENAMESPACE_SXP: "R_BaseNamespace",
    EMPTYENV_SXP: "R_EmptyEnv", BASEENV_SXP: "R_BaseEnv",
}  # fmt: skip


class RSymbol(str):
    """An R symbol (its name)."""


class RSpecial(str):
    """A value with no Python counterpart: a special environment, a persistent name, a builtin."""


class RVector(list):
    """An R vector: its elements (None for NA) plus `sexptype` and `attrs` (name → value)."""

    def __init__(self, items: Any, sexptype: int, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(items)
        self.sexptype, self.attrs = sexptype, attrs or {}

    @property
    def names(self) -> list[str | None] | None:
        """The "names" attribute, or None."""
        n = self.attrs.get("names")
        return list(n) if n is not None else None


class RPairlist(list):
    """A pairlist, call or closure: a list of (tag or None, value) with `sexptype` and `attrs`."""

    def __init__(self, items: Any, sexptype: int, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(items)
        self.sexptype, self.attrs = sexptype, attrs or {}

    def as_dict(self) -> dict[str, Any]:
        """{tag: value} for the tagged entries."""
        return {str(t): v for t, v in self if t is not None}


class REnvironment(dict):
    """An environment's variables (name → value); `enclos` and `attrs` kept alongside."""

    enclos: Any = None
    attrs: dict[str, Any]


def _attrs_dict(pl: Any) -> dict[str, Any]:
    return pl.as_dict() if isinstance(pl, RPairlist) else {}


class _Reader:
    """One serialization stream from a bytes buffer (XDR: big-endian)."""

    def __init__(self, buf: bytes) -> None:
        self.buf, self.pos, self.refs = buf, 0, []
        self.native_encoding = "utf-8"

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise ValueError(f"R stream truncated at byte {self.pos} (wanted {n} more)")
        b = self.buf[self.pos : self.pos + n]
        self.pos += n
        return b

    def int(self) -> int:
        return struct.unpack(">i", self._take(4))[0]

    def length(self) -> int:
        n = self.int()
        if n == -1:
            hi, lo = struct.unpack(">II", self._take(8))
            return (hi << 32) + lo
        if n < -1:
            raise ValueError(f"R stream: negative vector length {n}")
        return n

    def header(self) -> None:
        fmt = self._take(2)
        if fmt != b"X\n":
            kind = {b"A\n": "ASCII", b"B\n": "native binary"}.get(fmt, repr(fmt))
            raise ValueError(f"R stream format {kind} not supported (only XDR, b'X\\n')")
        version, _writer, _min_reader = self.int(), self.int(), self.int()
        if version not in (2, 3):
            raise ValueError(f"R serialization version {version} not supported (2 or 3)")
        if version == 3:
            enc = self._take(self.int()).decode("ascii", "replace")
            try:
                self.native_encoding = codecs.lookup(enc).name
            except LookupError:
                self.native_encoding = "utf-8"

    def charsxp(self, levels: int) -> str | None:
        n = self.int()
        if n == -1:
            return None  # NA_STRING
        raw = self._take(n)
        if levels & (1 << 2):  # LATIN1_MASK
            return raw.decode("latin-1")
        if levels & ((1 << 3) | (1 << 6) | (1 << 1)):  # UTF8, ASCII, BYTES
            return raw.decode("utf-8", "replace")
        return raw.decode(self.native_encoding, "replace")

    def item(self) -> Any:
        flags = self.int()
        t, levels = flags & 0xFF, flags >> 12
        has_attr, has_tag = bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if t == NILVALUE_SXP:
            return None
        if t == REFSXP:
            idx = flags >> 8 or self.int()
            return self.refs[idx - 1]
        if t in _SPECIAL_ENVS:
            return RSpecial(_SPECIAL_ENVS[t])
        if t in (PERSISTSXP, NAMESPACESXP, PACKAGESXP):
            if self.int() != 0:
                raise ValueError("R stream: bad persistent string vector")
            names = [self.item() for _ in range(self.int())]
            out = RSpecial(f"{_kind_name(t)}:{','.join(str(s) for s in names)}")
            self.refs.append(out)
            return out
        if t == SYMSXP:
            sym = RSymbol(self.item() or "")
            self.refs.append(sym)
            return sym
        if t in _PAIRLISTS:
            return self._pairlist(t, has_attr, has_tag)
        if t == ENVSXP:
            return self._environment()
        if t == ALTREP_SXP:
            return self._altrep()
        if t == CHARSXP:
            return self.charsxp(levels)
        if t in (SPECIALSXP, BUILTINSXP):
            return RSpecial(self._take(self.int()).decode("ascii", "replace"))
        if t in (EXTPTRSXP, WEAKREFSXP):
            out = RSpecial("externalptr" if t == EXTPTRSXP else "weakref")
            self.refs.append(out)
            if t == EXTPTRSXP:
                self.item(), self.item()  # protected value and tag
            return self._with_attrs(RVector([], t), has_attr)
        return self._with_attrs(self._vector(t), has_attr)

    def _with_attrs(self, v: RVector, has_attr: bool) -> RVector:
        if has_attr:
            v.attrs = _attrs_dict(self.item())
        return v

    def _vector(self, t: int) -> RVector:
        if t == S4SXP:
            return RVector([], t)
        if t == BCODESXP:
            raise ValueError("R stream: byte code (BCODESXP) is not supported")
        n = self.length()
        if t in (LGLSXP, INTSXP):
            vals = struct.unpack(f">{n}i", self._take(4 * n))
            return RVector([None if v == NA_INTEGER else v for v in vals], t)
        if t == REALSXP:
            return RVector(struct.unpack(f">{n}d", self._take(8 * n)), t)
        if t == CPLXSXP:
            d = struct.unpack(f">{2 * n}d", self._take(16 * n))
            return RVector([complex(d[2 * i], d[2 * i + 1]) for i in range(n)], t)
        if t == RAWSXP:
            return RVector(self._take(n), t)
        if t in (STRSXP, VECSXP, EXPRSXP):
            return RVector([self.item() for _ in range(n)], t)
        raise ValueError(f"R stream: unsupported SEXP type {t} at byte {self.pos - 4}")

    def _pairlist(self, t: int, has_attr: bool, has_tag: bool) -> RPairlist:
        # Iterative over the CDR chain: pairlists can be long, Python's stack is not.
        head = RPairlist([], t)
        while True:
            attrs = _attrs_dict(self.item()) if has_attr else {}
            if not head:  # the first node's attributes are the pairlist's
                head.attrs = attrs
            tag = self.item() if has_tag else None
            head.append((tag, self.item()))
            flags = self.int()
            if flags & 0xFF not in _PAIRLISTS:
                self.pos -= 4  # not a pairlist node: the CDR is an ordinary item
                cdr = self.item()
                if cdr is not None:
                    head.append((None, cdr))
                return head
            has_attr, has_tag = bool(flags & (1 << 9)), bool(flags & (1 << 10))

    def _environment(self) -> REnvironment:
        env = REnvironment()
        self.refs.append(env)  # before its contents: they may refer back to it
        self.int()  # locked flag
        env.enclos = self.item()
        frame, hashtab = self.item(), self.item()
        env.attrs = _attrs_dict(self.item())
        if isinstance(frame, RPairlist):
            env.update(frame.as_dict())
        for bucket in hashtab or []:
            if isinstance(bucket, RPairlist):
                env.update(bucket.as_dict())
        return env

    def _altrep(self) -> Any:
        info, state, attr = self.item(), self.item(), self.item()
        cls = str(info[0][1]) if isinstance(info, RPairlist) and info else "?"
        attrs = _attrs_dict(attr)
        if cls in ("compact_intseq", "compact_realseq"):
            n, start, step = state
            t = INTSXP if cls == "compact_intseq" else REALSXP
            conv = int if t == INTSXP else float
            return RVector([conv(start + i * step) for i in range(int(n))], t, attrs)
        if cls.startswith("wrap_"):
            x = state[0]
            x.attrs = {**x.attrs, **attrs}
            return x
        if cls == "deferred_string":
            arg = state[0][1] if isinstance(state, RPairlist) else state
            return RVector([None if v is None else _r_number(v) for v in arg], STRSXP, attrs)
        raise ValueError(f"R stream: ALTREP class {cls!r} is not supported")


def _kind_name(t: int) -> str:
    return {PERSISTSXP: "persist", NAMESPACESXP: "namespace", PACKAGESXP: "package"}[t]


def _r_number(v: Any) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def decompress(data: bytes) -> bytes:
    """Undo gzip, bzip2 or xz by their magic bytes (R's gzfile() does the same); else as is."""
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:3] == b"BZh":
        return bz2.decompress(data)
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(data)
    return data


def unserialize(buf: bytes) -> Any:
    """One uncompressed serialization stream (b"X\\n" …) → Python values (see the classes)."""
    r = _Reader(buf)
    r.header()
    return r.item()


def read_rds(path: str | Path) -> Any:
    """The object saved by R's saveRDS() (any compression)."""
    return unserialize(decompress(Path(path).read_bytes()))


def read_rda(path: str | Path) -> dict[str, Any]:
    """{name: object} saved by R's save() into an .rda/.RData file (any compression)."""
    buf = decompress(Path(path).read_bytes())
    if buf[:5] not in (b"RDX2\n", b"RDX3\n"):
        raise ValueError(f"{path}: not an XDR .rda file (magic {buf[:5]!r}; want RDX2/RDX3)")
    obj = unserialize(buf[5:])
    return obj.as_dict() if isinstance(obj, RPairlist) else {}


def _blob(data: bytes, compressed: Any) -> bytes:
    size = struct.unpack(">I", data[:4])[0]
    if compressed in (None, True, 1):  # compress=TRUE: zlib right after the size
        out = zlib.decompress(data[4:])
    else:
        kind, body = data[4:5], data[5:]
        decoders = {b"1": zlib.decompress, b"2": bz2.decompress, b"Z": lzma.decompress}
        out = decoders[kind](body) if kind in decoders else body
    if len(out) != size:
        raise ValueError(
            f"lazy-load blob: {len(out)} bytes after decompression, header says {size}"
        )
    return out


def read_lazyload_db(base: str | Path) -> dict[str, Any]:
    """{name: object} of a lazy-load database `<base>.rdx` + `<base>.rdb` (e.g. data/Rdata)."""
    base = Path(base)
    raw = read_rds(base.with_suffix(".rdx"))
    index = dict(zip(raw.names or [], raw))
    variables, compressed = index["variables"], index.get("compressed")
    flag = compressed[0] if isinstance(compressed, RVector) and compressed else True
    db = base.with_suffix(".rdb").read_bytes()
    out = {}
    for name, (offset, length) in zip(variables.names or [], variables):
        out[name] = unserialize(_blob(db[offset : offset + length], flag))
    return out


def read_r_data_dir(path: str | Path) -> dict[str, Any]:
    """Every object of an installed R package's data/ folder (lazy-load DB, .rda, .rds)."""
    path = Path(path)
    out: dict[str, Any] = {}
    for rdx in sorted(path.glob("*.rdx")):
        out.update(read_lazyload_db(rdx.with_suffix("")))
    for f in sorted(path.iterdir()):
        if f.suffix.lower() in (".rda", ".rdata"):
            out.update(read_rda(f))
        elif f.suffix.lower() == ".rds" and not f.with_suffix(".rdx").exists():
            out[f.stem] = read_rds(f)  # Rdata.rds beside a DB is only the DB's index
    return out


def character_vectors(objects: dict[str, Any]) -> Iterator[tuple[str, list[str | None]]]:
    """(name, strings) for every character vector among `objects`, inside lists too (depth-first;
    a list's element is named `list$element`, or `list[[i]]` without names)."""
    for name, obj in objects.items():
        if isinstance(obj, RVector) and obj.sexptype == STRSXP:
            yield name, list(obj)
        elif isinstance(obj, RVector) and obj.sexptype in (VECSXP, EXPRSXP):
            names = obj.names or [None] * len(obj)
            sub = {
                f"{name}${n}" if n else f"{name}[[{i + 1}]]": v
                for i, (n, v) in enumerate(zip(names, obj))
            }
            yield from character_vectors(sub)
