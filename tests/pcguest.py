"""Small guests for the pc board: 64-bit code (assembled here with keystone) wrapped in a
bzImage whose setup header follows Linux's boot protocol, so the board's loader starts them
exactly as it starts Linux's decompressor (the protected-mode part at its preferred address,
entered at +0x200 in long mode with the loader's identity map)."""

from __future__ import annotations

import struct
from pathlib import Path

import keystone

PREF = 0x100000
ENTRY = PREF + 0x200
IDT = 0x200000  # the guests' IDT (identity-mapped RAM the loader leaves alone)
COUNTER = 0x201000


def assemble(source: str, at: int = ENTRY) -> bytes:
    ks = keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_64)
    encoding, _ = ks.asm(source, at)
    return bytes(encoding)


def bzimage(
    code: bytes,
    version: int = 0x20F,
    xloadflags: int = 1,
    init_size: int = 0x100000,
    pref: int = PREF,
    truncate: int | None = None,
) -> bytes:
    """Boot sector + one setup sector + the protected-mode part (32-bit entry padding, then the
    64-bit entry at +0x200 holding ``code``)."""
    pm = bytes(0x200) + code
    pm += bytes(-len(pm) % 16)
    setup = bytearray(1024)
    setup[0x1F1] = 1  # setup_sects
    struct.pack_into("<I", setup, 0x1F4, len(pm) // 16)  # syssize
    setup[0x1FE:0x200] = b"\x55\xaa"
    setup[0x200] = 0xEB
    setup[0x201] = 0x66  # jump over the header: its end is 0x268
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, version)
    setup[0x211] = 1  # LOADED_HIGH
    struct.pack_into("<I", setup, 0x22C, 0x7FFFFFFF)  # initrd_addr_max
    struct.pack_into("<I", setup, 0x230, 0x200000)  # kernel_alignment
    struct.pack_into("<H", setup, 0x236, xloadflags)
    struct.pack_into("<I", setup, 0x238, 2047)  # cmdline_size
    struct.pack_into("<Q", setup, 0x258, pref)
    struct.pack_into("<I", setup, 0x260, init_size)
    data = bytes(setup) + pm
    return data[:truncate] if truncate is not None else data


def write(tmp: Path, name: str, source: str, **kw: object) -> Path:
    path = tmp / name
    path.write_bytes(bzimage(assemble(source), **kw))  # type: ignore[arg-type]
    return path


# -- snippets ------------------------------------------------------------------------------------
def putc(ch: str) -> str:
    return f"mov dx, 0x3f8\nmov al, {ord(ch)}\nout dx, al\n"


def puts(text: str) -> str:
    return "".join(putc(c) for c in text)


PUT_HEX_AL = """
    push rax
    shr al, 4
    call hexdigit
    pop rax
    and al, 15
    call hexdigit
"""

HEXDIGIT = """
hexdigit:
    and al, 15
    cmp al, 10
    jb hexdigit_low
    add al, 39
hexdigit_low:
    add al, 48
    mov dx, 0x3f8
    out dx, al
    ret
"""


def exit_with(status: int) -> str:
    return f"mov dx, 0xf4\nmov al, {status}\nout dx, al\nhlt\n"


PIC_INIT = """
    mov al, 0x11
    out 0x20, al
    out 0xa0, al
    mov al, 0x20
    out 0x21, al
    mov al, 0x28
    out 0xa1, al
    mov al, 4
    out 0x21, al
    mov al, 2
    out 0xa1, al
    mov al, 1
    out 0x21, al
    out 0xa1, al
"""


def set_gate(vector: int, label: str) -> str:
    """Point IDT entry ``vector`` at ``label`` (an interrupt gate, CS 0x10) and load the IDTR."""
    gate = IDT + 16 * vector
    return f"""
    lea rax, [rip + {label}]
    mov rdi, {gate}
    mov word ptr [rdi], ax
    mov word ptr [rdi + 2], 0x10
    mov word ptr [rdi + 4], 0x8e00
    shr rax, 16
    mov word ptr [rdi + 6], ax
    shr rax, 16
    mov dword ptr [rdi + 8], eax
    mov dword ptr [rdi + 12], 0
    mov rdi, {COUNTER + 0x100}
    mov word ptr [rdi], 4095
    mov qword ptr [rdi + 2], {IDT}
    lidt [rdi]
"""
