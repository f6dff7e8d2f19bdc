"""tcprules: per-client-address allow/deny and environment, as tcpserver does.

A rules file (``tcp/tcp.smtp``) has lines ``address:allow|deny[,VAR="v"]...``
and is compiled to ``tcp.smtp.cdb`` with upstream's key encoding (ucspi-tcp
``tcprules.c`` with its IPv6/CIDR extension), so our cdb and the C tools'
cdb are interchangeable:

* ``1.2.3.4``, prefixes ``10.0.`` and the empty address are stored as
  written; ranges ``1.2.3.37-53`` / ``10.2-3.`` are stored expanded;
* an IPv6 address is stored in full form (``2001:0db8:0000:...``);
* CIDR ``10.1.0.0/16`` is stored as ``_`` + the prefix bits, each 1-bit at
  position k written as ``"abc...z123456"[k]``; IPv6 CIDR as ``^`` + the
  bits, the n-th 1-bit written as byte 96+n; 0-bits are ``0``;
* the value is ``D\\0`` for deny, then ``+VAR=value\\0`` / ``-VAR\\0``.

Lookup follows ``rules.c``: the address itself (IPv6 full form first),
then shorter IPv4 prefixes ending in ``.``, then CIDR keys from the longest
prefix down to /2 (upstream never tries /1 or /0), finally the empty key.
The first key found wins; with no rules file at all everything is allowed.

Assignment values may be quoted with ``"`` or ``'`` or left unquoted up to
the next comma (upstream takes any character after ``=`` as the quote);
``,!VAR`` unsets ``VAR`` (IndiMail's addition).
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cdblib

from .cdb import write_cdb
from .control import ControlFileError, _stamp

_V4_LETTERS = b"abcdefghijklmnopqrstuvwxyz123456"
_V4_PARTIAL = re.compile(r"^(?:\d{1,3}(?:\.\d{0,3}){0,3})?$")


@dataclass(frozen=True)
class TcpRuleResult:
    """What the rules say for one client: allowed or not, and the
    ``(VAR, value-or-None)`` changes to apply with ``Environment.apply``."""

    allow: bool
    assignments: list[tuple[str, str | None]] = field(default_factory=list)
    rule: str | None = None  # the key that matched; None when no rule did


# ---------------------------------------------------------------- encoding

def ipv4_bits(octets: bytes, prefix: int) -> bytes:
    """Upstream's letter-substituted bit string of an IPv4 prefix."""
    out = bytearray()
    for k in range(prefix):
        bit = (octets[k // 8] >> (7 - k % 8)) & 1
        out.append(_V4_LETTERS[k] if bit else ord("0"))
    return bytes(out)


def ipv6_bits(packed: bytes, prefix: int) -> bytes:
    """Upstream's bit string of an IPv6 prefix: the n-th 1-bit is byte 96+n."""
    out = bytearray()
    ones = 0
    for k in range(prefix):
        if (packed[k // 8] >> (7 - k % 8)) & 1:
            out.append((96 + ones) & 0xFF)
            ones += 1
        else:
            out.append(ord("0"))
    return bytes(out)


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def parse_data(data: bytes) -> tuple[bool, list[tuple[str, str | None]]]:
    """Decode a compiled rule's value (tcpserver's ``found``)."""
    allow = True
    assignments: list[tuple[str, str | None]] = []
    for record in data.split(b"\0")[:-1]:
        if record.startswith(b"D"):
            allow = False
        elif record.startswith(b"+"):
            name, sep, value = record[1:].partition(b"=")
            if sep:
                assignments.append((_decode(name), _decode(value)))
        elif record.startswith(b"-"):
            assignments.append((_decode(record[1:]), None))
    return allow, assignments


# ---------------------------------------------------------------- compiling

class _Line:
    """One rules line being compiled; errors name the file and line."""

    def __init__(self, path: str, lineno: int, text: bytes):
        self.path, self.lineno, self.text = path, lineno, text

    def bad(self, why: str) -> ControlFileError:
        return ControlFileError(self.path, self.lineno, f"{why}: {_decode(self.text)}")

    def split(self) -> tuple[bytes, bytes]:
        """The address and the instructions: at the first ``:`` followed by
        ``allow`` or ``deny`` (IPv6 addresses contain colons)."""
        start = 0
        while True:
            colon = self.text.find(b":", start)
            if colon < 0:
                raise self.bad("no ':allow' or ':deny' on this line")
            rest = self.text[colon + 1:]
            if rest.startswith(b"allow") or rest.startswith(b"deny"):
                return self.text[:colon], rest
            start = colon + 1

    def data(self, instructions: bytes) -> bytes:
        if instructions.startswith(b"deny"):
            out, rest = bytearray(b"D\0"), instructions[4:]
        else:
            out, rest = bytearray(), instructions[5:]
        while rest:
            if not rest.startswith(b","):
                raise self.bad("expected ',' between instructions")
            rest = rest[1:]
            if rest.startswith(b"!"):
                name, _, rest = rest[1:].partition(b",")
                rest = b"," + rest if _ else b""
                if not name or b"=" in name:
                    raise self.bad("bad variable to unset")
                out += b"-" + name + b"\0"
                continue
            name, sep, rest = rest.partition(b"=")
            if not sep or not name or b"," in name:
                raise self.bad("expected VAR=value")
            if rest[:1] in (b'"', b"'"):
                end = rest.find(rest[:1], 1)
                if end < 0:
                    raise self.bad("unterminated quote")
                value, rest = rest[1:end], rest[end + 1:]
            else:
                comma = rest.find(b",")
                value, rest = (rest, b"") if comma < 0 else (rest[:comma], rest[comma:])
            out += b"+" + name + b"=" + value + b"\0"
        return bytes(out)

    def keys(self, address: bytes) -> list[bytes]:
        """The cdb keys *address* stands for (``doaddressdata``)."""
        text = _decode(address)
        if "=" in text:
            return [address]  # =host and info@=host
        if "@" in text:
            info, _, ip = address.partition(b"@")
            if b":" in ip and b"/" not in ip:
                return [info + b"@" + self._v6(ip).exploded.encode()]
            return [address]
        if "/" in text:
            return [self._cidr(text)]
        if ":" in text:
            return [self._v6(address).exploded.encode()]
        if "-" in text:
            return self._range(text)
        self._check_v4(text)
        return [address]

    def _v6(self, raw: bytes) -> ipaddress.IPv6Address:
        try:
            return ipaddress.IPv6Address(_decode(raw))
        except ValueError:
            raise self.bad("invalid IPv6 address") from None

    def _check_v4(self, text: str) -> None:
        if not _V4_PARTIAL.match(text) or any(int(part) > 255 for part in text.split(".") if part):
            raise self.bad("invalid IPv4 address")

    def _cidr(self, text: str) -> bytes:
        address, _, length = text.partition("/")
        if not length.isdigit():
            raise self.bad("invalid prefix length")
        prefix = int(length)
        if ":" in address:
            if not 0 < prefix <= 128:
                raise self.bad("invalid prefix length")
            return b"^" + ipv6_bits(self._v6(address.encode()).packed, prefix)
        if not 0 < prefix <= 32:
            raise self.bad("invalid prefix length")
        parts = address.split(".")
        needed = (prefix + 7) // 8
        if len(parts) < needed or not all(p.isdigit() and int(p) <= 255 for p in parts[:needed]):
            raise self.bad("invalid IPv4 CIDR address")
        octets = bytes(int(p) for p in parts[:needed]) + bytes(4 - needed)
        return b"_" + ipv4_bits(octets, prefix)

    def _range(self, text: str) -> list[bytes]:
        dash = text.index("-")
        left = text.rfind(".", 0, dash) + 1
        right = text.find(".", dash + 1)
        right = len(text) if right < 0 else right
        bottom, top = text[left:dash], text[dash + 1:right]
        if not (bottom.isdigit() and top.isdigit()):
            raise self.bad("invalid address range")
        head, tail = text[:left], text[right:]
        self._check_v4(head + "0" + tail)
        return [f"{head}{n}{tail}".encode() for n in range(int(bottom), min(int(top), 255) + 1)]


def compile_rules(data: bytes, path: os.PathLike | str = "<rules>") -> list[tuple[bytes, bytes]]:
    """The ``(key, value)`` records of a rules text, in file order."""
    records: list[tuple[bytes, bytes]] = []
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        text = raw.strip(b" \t\r")
        if not text or text.startswith(b"#"):
            continue
        line = _Line(str(path), lineno, text)
        address, instructions = line.split()
        value = line.data(instructions)
        records.extend((key, value) for key in line.keys(address))
    return records


def compile_tcprules(source: os.PathLike | str, target: os.PathLike | str | None = None) -> Path:
    """Compile the rules file *source* to *target* (default ``source.cdb``),
    atomically; a bad line raises ``ControlFileError`` and leaves the old cdb."""
    source = Path(source)
    target = Path(target) if target else source.with_name(source.name + ".cdb")
    records = compile_rules(source.read_bytes(), source)
    write_cdb(target, records)
    return target


# ---------------------------------------------------------------- matching

def _candidate_keys(ip: str) -> list[bytes]:
    """Keys tried for *ip*, in ``rules.c`` order (without host/info forms)."""
    text = ip.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        addr = None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # tcpserver's fakev4
        text = str(addr)
    keys: list[bytes] = []
    if isinstance(addr, ipaddress.IPv6Address):
        keys += [addr.exploded.encode(), text.encode(), addr.compressed.encode()]
        keys += [b"^" + ipv6_bits(addr.packed, p) for p in range(128, 1, -1)]
    else:
        keys.append(text.encode())
        keys += [text[:n].encode() for n in range(len(text) - 1, 0, -1) if text[n - 1] == "."]
        if addr is not None:
            keys += [b"_" + ipv4_bits(addr.packed, p) for p in range(32, 1, -1)]
    keys.append(b"")
    seen: set[bytes] = set()
    return [k for k in keys if not (k in seen or seen.add(k))]


class TcpRules:
    """A loaded rules set: ``match(ip)`` says allow/deny and what to set."""

    def __init__(self, lookup: Callable[[bytes], bytes | None] | None, source: str | None = None):
        self._lookup = lookup
        self.source = source

    @classmethod
    def from_records(cls, records: list[tuple[bytes, bytes]], source: str | None = None) -> "TcpRules":
        table: dict[bytes, bytes] = {}
        for key, value in records:
            table.setdefault(key, value)  # cdb_find returns the first record
        return cls(table.get, source)

    @classmethod
    def from_cdb(cls, data: bytes, source: str | None = None) -> "TcpRules":
        try:
            reader = cdblib.Reader(data)
        except Exception as exc:
            raise ControlFileError(source or "<cdb>", None, f"not a cdb file ({exc})") from exc
        return cls(reader.get, source)

    @classmethod
    def load(cls, path: os.PathLike | str) -> "TcpRules":
        """Rules from ``path.cdb`` when present, else the text ``path``;
        neither present means everything is allowed."""
        text_path = Path(path)
        if text_path.name.endswith(".cdb"):
            text_path = text_path.with_name(text_path.name[:-4])
        cdb_path = text_path.with_name(text_path.name + ".cdb")
        try:
            return cls.from_cdb(cdb_path.read_bytes(), str(cdb_path))
        except FileNotFoundError:
            pass
        try:
            data = text_path.read_bytes()
        except FileNotFoundError:
            return cls(None, None)
        return cls.from_records(compile_rules(data, text_path), str(text_path))

    def match(self, ip: str) -> TcpRuleResult:
        if self._lookup is None:
            return TcpRuleResult(True, [], None)
        for key in _candidate_keys(ip):
            value = self._lookup(key)
            if value is not None:
                allow, assignments = parse_data(value)
                return TcpRuleResult(allow, assignments, _decode(key))
        return TcpRuleResult(True, [], None)


ANSWER_CACHE = 4096   # remembered per-IP answers before the cache starts over


class TcpRulesFile:
    """``TcpRules.load`` kept fresh: reloaded when the text or cdb changes,
    for a listener that consults the rules at every connection."""

    def __init__(self, path: os.PathLike | str):
        self.path = Path(path)
        self._cdb = self.path.with_name(self.path.name + ".cdb")
        self._stamps: object = None
        self._rules: TcpRules | None = None
        self._answers: dict[str, TcpRuleResult] = {}   # per IP, for the current rules

    def rules(self) -> TcpRules:
        stamps = (_stamp(self._cdb), _stamp(self.path))
        if self._rules is None or stamps != self._stamps:
            self._rules = TcpRules.load(self.path)
            self._stamps = stamps
            self._answers = {}
        return self._rules

    def match(self, ip: str) -> TcpRuleResult:
        """The rule for *ip*; answers are remembered until the rules change
        (a busy client's every connection would otherwise redo the search)."""
        rules = self.rules()
        answer = self._answers.get(ip)
        if answer is None:
            if len(self._answers) >= ANSWER_CACHE:
                self._answers.clear()
            answer = self._answers[ip] = rules.match(ip)
        return answer
