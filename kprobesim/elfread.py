"""A small, bounds-checked reader for 64-bit little-endian ELF kernel images.

Reads what loading a kernel needs (header, loadable segments, executable ranges, the symbol
table) and checks every offset and size against the file first, so a truncated or damaged
image is refused with one line naming the damaged part instead of losing symbols silently.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PT_LOAD = 1
PF_X = 1
SHT_SYMTAB, SHT_STRTAB, SHT_NOBITS, SHT_DYNSYM = 2, 3, 8, 11
SHF_ALLOC, SHF_EXECINSTR = 0x2, 0x4
STT_FUNC, STT_SECTION, STT_FILE = 2, 3, 4
SHN_UNDEF, SHN_LORESERVE, SHN_XINDEX = 0, 0xFF00, 0xFFFF
_PHDR = struct.Struct("<IIQQQQQQ")  # type flags offset vaddr paddr filesz memsz align
_SHDR = struct.Struct("<IIQQQQIIQQ")  # name type flags addr offset size link info align entsize
_SYM = struct.Struct("<IBBHQQ")  # name info other shndx value size


#: Sections whose name says what their type must be (a flipped type must not hide the symbols).
_TABLE_TYPES = {".symtab": SHT_SYMTAB, ".dynsym": SHT_DYNSYM}


class ElfDamage(Exception):
    """The file is not a well-formed ELF64 image; the message names the damaged part."""


@dataclass(frozen=True)
class ElfSegment:
    vaddr: int
    offset: int
    filesz: int
    memsz: int
    executable: bool


@dataclass(frozen=True)
class ElfSymbol:
    name: str
    value: int
    size: int
    is_func: bool


@dataclass
class ElfHeader:
    """What the ELF header and program headers say (read before the rest of the file)."""

    machine: int
    entry: int
    phoff: int
    phnum: int
    shoff: int
    shnum: int
    shstrndx: int


def read_header(head: bytes) -> ElfHeader:
    """Parse the 64-byte ELF header (the caller has checked the magic)."""
    if len(head) < 64:
        raise ElfDamage("truncated ELF header")
    if head[4] != 2 or head[5] != 1:
        raise ElfDamage("only 64-bit little-endian ELF images are supported")
    machine, _version, entry, phoff, shoff = struct.unpack_from("<HIQQQ", head, 18)
    phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", head, 54)
    if phnum and phentsize != _PHDR.size:
        raise ElfDamage(f"program header entry size {phentsize} (expected {_PHDR.size})")
    if shnum and shentsize != _SHDR.size:
        raise ElfDamage(f"section header entry size {shentsize} (expected {_SHDR.size})")
    return ElfHeader(machine, entry, phoff, phnum, shoff, shnum, shstrndx)


def _span(what: str, offset: int, size: int, file_size: int) -> None:
    if offset + size > file_size:
        raise ElfDamage(
            f"{what} at file offset {offset:#x} (+{size:#x}) extends past the end of the file ({file_size:#x} bytes)"
        )


def read_segments(hdr: ElfHeader, phdrs: bytes, file_size: int) -> list[ElfSegment]:
    """Loadable segments from the program header table ``phdrs`` (read at ``hdr.phoff``)."""
    out = []
    for i in range(hdr.phnum):
        ptype, flags, offset, vaddr, _paddr, filesz, memsz, _align = _PHDR.unpack_from(phdrs, i * _PHDR.size)
        if ptype != PT_LOAD or memsz == 0:
            continue
        if filesz > memsz:
            raise ElfDamage(f"segment {i} at {vaddr:#x}: file size {filesz:#x} exceeds memory size {memsz:#x}")
        _span(f"segment {i} at {vaddr:#x}", offset, filesz, file_size)
        out.append(ElfSegment(vaddr, offset, filesz, memsz, bool(flags & PF_X)))
    return out


def program_header_span(hdr: ElfHeader, file_size: int) -> tuple[int, int]:
    """Offset and size of the program header table, checked against the file."""
    size = hdr.phnum * _PHDR.size
    _span("program header table", hdr.phoff, size, file_size)
    return hdr.phoff, size


@dataclass(frozen=True)
class _Section:
    index: int
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


def _sections(hdr: ElfHeader, data: bytes) -> list[_Section]:
    if hdr.shnum == 0:
        return []
    _span("section header table", hdr.shoff, hdr.shnum * _SHDR.size, len(data))
    raw = [_SHDR.unpack_from(data, hdr.shoff + i * _SHDR.size) for i in range(hdr.shnum)]
    names = b""
    if hdr.shstrndx not in (SHN_UNDEF, SHN_XINDEX) and hdr.shstrndx < hdr.shnum:
        s = raw[hdr.shstrndx]
        if s[1] == SHT_STRTAB:
            _span(f"section-name table (section {hdr.shstrndx})", s[4], s[5], len(data))
            names = data[s[4] : s[4] + s[5]]
    out = []
    for i, (name, stype, flags, addr, offset, size, link, _info, _align, entsize) in enumerate(raw):
        label = (_cstr(names, name) if name < len(names) else None) or f"#{i}"
        if stype != SHT_NOBITS and i:
            _span(f"section {i} '{label}'", offset, size, len(data))
        out.append(_Section(i, label, stype, flags, addr, offset, size, link, entsize))
    return out


def _cstr(table: bytes, offset: int) -> str | None:
    end = table.find(b"\0", offset)
    if end < 0:
        return None
    return table[offset:end].decode("utf-8", "replace")


def section_bytes(hdr: ElfHeader, data: bytes, name: str) -> bytes | None:
    """The contents of the section called ``name`` (None when there is none, or it is empty)."""
    for s in _sections(hdr, data):
        if s.name == name and s.type != SHT_NOBITS and s.size:
            return data[s.offset : s.offset + s.size]
    return None


def executable_ranges(hdr: ElfHeader, data: bytes, segments: list[ElfSegment]) -> list[tuple[int, int]]:
    """Address ranges of kernel text: allocated executable sections, else executable segments."""
    ranges = [
        (s.addr, s.addr + s.size)
        for s in _sections(hdr, data)
        if s.flags & SHF_ALLOC and s.flags & SHF_EXECINSTR and s.size
    ]
    return ranges or [(s.vaddr, s.vaddr + s.memsz) for s in segments if s.executable]


def read_symbols(hdr: ElfHeader, data: bytes) -> list[ElfSymbol]:
    """Defined, named symbols of the symbol table (SHT_SYMTAB, else SHT_DYNSYM)."""
    sections = _sections(hdr, data)
    for s in sections:  # a symbol table's header with a damaged type would hide every symbol
        want = _TABLE_TYPES.get(s.name)
        if want is not None and s.type != want:
            raise ElfDamage(f"section {s.index} '{s.name}' has type {s.type:#x}, not {want} (a symbol table)")
    table = next((s for s in sections if s.type == SHT_SYMTAB), None) or next(
        (s for s in sections if s.type == SHT_DYNSYM), None
    )
    if table is None:
        return []
    where = f"symbol table '{table.name}'"
    if table.entsize != _SYM.size:
        raise ElfDamage(f"{where}: entry size {table.entsize} (expected {_SYM.size})")
    if table.size % _SYM.size:
        raise ElfDamage(f"{where}: size {table.size:#x} is not a whole number of entries")
    if not 0 < table.link < len(sections) or sections[table.link].type != SHT_STRTAB:
        raise ElfDamage(f"{where}: its string table (section {table.link}) is not a string table")
    strtab = sections[table.link]
    names = data[strtab.offset : strtab.offset + strtab.size]
    if names[:1] != b"\0":  # the ELF rule: a table that moved breaks it
        raise ElfDamage(f"{where}: its string table '{strtab.name}' does not start with a NUL byte")
    if names[-1:] != b"\0":
        raise ElfDamage(f"{where}: the last name of '{strtab.name}' is not terminated")
    out = []
    for i in range(1, table.size // _SYM.size):  # entry 0 is the null symbol
        name, info, _other, shndx, value, size = _SYM.unpack_from(data, table.offset + i * _SYM.size)
        if name >= len(names):
            raise ElfDamage(f"{where}: symbol {i} names string offset {name:#x} beyond '{strtab.name}'")
        text = names[name : names.index(b"\0", name)].decode("utf-8", "replace")  # the table ends in NUL
        stype = info & 0xF
        if not text or stype in (STT_SECTION, STT_FILE) or shndx == SHN_UNDEF:
            continue
        if shndx < SHN_LORESERVE and shndx >= len(sections):
            raise ElfDamage(f"{where}: symbol '{text}' refers to section {shndx} of {len(sections)}")
        out.append(ElfSymbol(text, value, size, stype == STT_FUNC))
    return out
