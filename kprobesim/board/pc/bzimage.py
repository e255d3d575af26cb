"""Linux's x86 boot protocol (Documentation/arch/x86/boot.rst), as a loader such as QEMU's
``-kernel`` follows it, entering the kernel's 64-bit entry point directly.

A bzImage is the real-mode setup (``setup_sects`` 512-byte sectors after the boot sector) and
then the protected-mode kernel: the decompressor with the compressed vmlinux as its payload.
Two ways to start it:

- ``guest``: load the protected-mode kernel at its preferred address and enter the
  decompressor's ``startup_64`` (+0x200); it decompresses in the guest (billions of instructions).
- ``host``: decompress the payload here and load the vmlinux ELF it holds by its physical
  segments, entering its ``startup_64`` (the ELF entry) with the same ``boot_params``: what the
  decompressor hands over when it does not move the kernel (KASLR off, load address = the
  kernel's link-time physical address).
"""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass
from pathlib import Path

from ...errors import ImageError
from ...files import read_regular
from ...guest import kimage
from ...guest.linux import with_kallsyms
from ...image import Image, Segment

SECTOR = 512
HDR = 0x1F1  # the setup header's place in the boot sector and in boot_params
MAX_BZIMAGE = 256 << 20
MIN_VERSION = 0x20C  # 2.12: xloadflags, the 64-bit entry
XLF_KERNEL_64 = 1
LOADED_HIGH = 1
# boot_params ("zero page") layout
BP_EXT_CMD_LINE_PTR = 0x0C8
BP_E820_ENTRIES = 0x1E8
BP_E820_TABLE = 0x2D0
BP_TYPE_OF_LOADER = 0x210
BP_LOADFLAGS = 0x211
BP_RAMDISK_IMAGE = 0x218
BP_RAMDISK_SIZE = 0x21C
BP_CMD_LINE_PTR = 0x228
BP_HARDWARE_SUBARCH = 0x23C
E820_RAM, E820_RESERVED = 1, 2
SIM_WINDOW_ENTRY = 0xA1  # present, accessed, 2 MiB page; not writable, executable


@dataclass(frozen=True)
class SetupHeader:
    """The fields of a bzImage's setup header the loader uses."""

    setup_sects: int
    version: int
    loadflags: int
    initrd_addr_max: int
    kernel_alignment: int
    xloadflags: int
    cmdline_size: int
    payload_offset: int
    payload_length: int
    pref_address: int
    init_size: int
    raw: bytes  # the header as found (copied into boot_params)

    @property
    def pm_offset(self) -> int:
        """File offset of the protected-mode kernel."""
        return (self.setup_sects + 1) * SECTOR


def is_bzimage(data: bytes) -> bool:
    return len(data) >= 0x206 and data[0x202:0x206] == b"HdrS"


def parse_header(path: Path, data: bytes) -> SetupHeader:
    """The setup header, or ImageError saying why this is no bzImage a 64-bit loader can start."""
    if len(data) < 0x264 or data[0x1FE:0x200] != b"\x55\xaa" or data[0x202:0x206] != b"HdrS":
        raise ImageError(f"{path}: not a bzImage (no 'HdrS' setup header)")
    version = struct.unpack_from("<H", data, 0x206)[0]
    if version < MIN_VERSION:
        raise ImageError(
            f"{path}: boot protocol {version >> 8}.{version & 0xFF} is too old (64-bit entry needs 2.12)"
        )
    xloadflags = struct.unpack_from("<H", data, 0x236)[0]
    if not xloadflags & XLF_KERNEL_64:
        raise ImageError(f"{path}: bzImage has no 64-bit entry point (xloadflags {xloadflags:#x})")
    setup_sects = data[0x1F1] or 4
    end = 0x202 + data[0x201]
    hdr = SetupHeader(
        setup_sects=setup_sects,
        version=version,
        loadflags=data[0x211],
        initrd_addr_max=struct.unpack_from("<I", data, 0x22C)[0],
        kernel_alignment=struct.unpack_from("<I", data, 0x230)[0],
        xloadflags=xloadflags,
        cmdline_size=struct.unpack_from("<I", data, 0x238)[0],
        payload_offset=struct.unpack_from("<I", data, 0x248)[0],
        payload_length=struct.unpack_from("<I", data, 0x24C)[0],
        pref_address=struct.unpack_from("<Q", data, 0x258)[0],
        init_size=struct.unpack_from("<I", data, 0x260)[0],
        raw=bytes(data[HDR:end]),
    )
    syssize = struct.unpack_from("<I", data, 0x1F4)[0] * 16
    if len(data) < hdr.pm_offset + syssize or len(data) < hdr.pm_offset + hdr.payload_offset + hdr.payload_length:
        raise ImageError(
            f"{path}: truncated bzImage ({len(data)} bytes, the header says "
            f"{hdr.pm_offset + max(syssize, hdr.payload_offset + hdr.payload_length)})"
        )
    return hdr


def decompress_payload(path: Path, data: bytes, hdr: SetupHeader) -> bytes:
    """The vmlinux ELF inside the bzImage (XZ, LZMA or gzip payloads)."""
    start = hdr.pm_offset + hdr.payload_offset
    try:
        return kimage.decompress(data[start : start + hdr.payload_length])
    except ImageError as e:
        raise ImageError(f"{path}: {e} (--decompress guest runs the kernel's own decompressor)") from None


@dataclass(frozen=True)
class Vmlinux:
    """The decompressed kernel: entry, PT_LOAD segments by physical address, and where the
    kernel maps them (``(virtual start, size, physical start)`` of its high mapping)."""

    entry: int
    segments: list[Segment]
    kernel_map: tuple[int, int, int]


def vmlinux_segments(path: Path, elf: bytes) -> Vmlinux:
    """Entry, segments and kernel mapping of the decompressed vmlinux."""
    if elf[:4] != b"\x7fELF" or len(elf) < 64 or elf[4] != 2:
        raise ImageError(f"{path}: the decompressed kernel is not a 64-bit ELF")
    entry, phoff = struct.unpack_from("<QQ", elf, 0x18)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    if phentsize < 56 or phoff + phnum * phentsize > len(elf):
        raise ImageError(f"{path}: the decompressed kernel's program headers lie outside it")
    segments, high = [], []
    for i in range(phnum):
        p_type, _, off, vaddr, paddr, filesz, memsz, _ = struct.unpack_from(
            "<IIQQQQQQ", elf, phoff + i * phentsize
        )
        if p_type == 1 and memsz:
            if off + filesz > len(elf) or filesz > memsz:
                raise ImageError(f"{path}: the decompressed kernel's segment at {paddr:#x} lies outside it")
            segments.append(Segment(paddr, elf[off : off + filesz], memsz))
            if vaddr >> 63:  # the kernel's high mapping (per-CPU data is linked at 0)
                high.append((vaddr, paddr, memsz))
    if not high or len({v - p for v, p, _ in high}) != 1:
        raise ImageError(f"{path}: the decompressed kernel's segments are not one linear high mapping")
    start, pstart, _ = min(high)
    end = max(v + size for v, _, size in high)
    return Vmlinux(entry, segments, (start, end - start, pstart))


@dataclass(frozen=True)
class Layout:
    """Where the loader puts its structures in low memory (all below 1 MiB, which Linux keeps)."""

    pml4: int = 0x1000
    pdpt: int = 0x2000
    pd: int = 0x3000  # four pages: 4 GiB identity-mapped with 2 MiB pages
    zero_page: int = 0x7000
    gdt: int = 0x8000
    pdpt_high: int = 0x9000  # the kernel half: only the simulator's page window (see PcBoard.sim_window)
    pd_high: int = 0xA000
    cmdline: int = 0x20000
    stack_top: int = 0x80000  # the entry's stack (Linux sets its own at once)


LAYOUT = Layout()
GDT = [0, 0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF]  # null, null, 0x10 code64, 0x18 data


def identity_tables(window: tuple[int, int], layout: Layout = LAYOUT) -> list[Segment]:
    """PML4 -> one PDPT -> four PDs of 2 MiB pages: virtual = physical below 4 GiB; and one
    read+execute 2 MiB page ``window`` = (virtual, physical) for the simulator's pages, in the
    kernel half (kprobe slots of a kernel still running on these tables)."""
    virtual, physical = window
    pml4 = bytearray(0x1000)
    pml4[:8] = struct.pack("<Q", layout.pdpt | 3)
    struct.pack_into("<Q", pml4, ((virtual >> 39) & 0x1FF) * 8, layout.pdpt_high | 3)
    pdpt = b"".join(struct.pack("<Q", (layout.pd + i * 0x1000) | 3) for i in range(4))
    pd = b"".join(struct.pack("<Q", (i << 21) | 0x83) for i in range(2048))
    pdpt_high, pd_high = bytearray(0x1000), bytearray(0x1000)
    struct.pack_into("<Q", pdpt_high, ((virtual >> 30) & 0x1FF) * 8, layout.pd_high | 3)
    struct.pack_into("<Q", pd_high, ((virtual >> 21) & 0x1FF) * 8, physical | SIM_WINDOW_ENTRY)
    return [
        Segment(layout.pml4, bytes(pml4), 0x1000), Segment(layout.pdpt, pdpt, 0x1000), Segment(layout.pd, pd, 0x4000),
        Segment(layout.pdpt_high, bytes(pdpt_high), 0x1000), Segment(layout.pd_high, bytes(pd_high), 0x1000),
    ]  # fmt: skip


def e820_map(ram_size: int) -> list[tuple[int, int, int]]:
    """The map QEMU's PC firmware reports for ``ram_size`` bytes (its last 128 KiB reserved)."""
    return [
        (0, 0x9FC00, E820_RAM),
        (0x9FC00, 0x400, E820_RESERVED),
        (0xF0000, 0x10000, E820_RESERVED),
        (0x100000, ram_size - 0x20000 - 0x100000, E820_RAM),
        (ram_size - 0x20000, 0x20000, E820_RESERVED),
        (0xFFFC0000, 0x40000, E820_RESERVED),
    ]


@dataclass
class Boot:
    """What the board needs to start the kernel: memory contents, entry and ``rsi``."""

    image: Image
    entry: int
    boot_params: int
    ram_top: int  # bytes of RAM the e820 map reports usable up to
    kernel_map: tuple[int, int, int] | None = None  # the vmlinux's high mapping, when known
    initrd: bytes | None = None  # the initramfs loaded with it (uprobes read its files)


def load_bzimage(
    path: str | Path,
    ram_size: int,
    cmdline: str = "",
    initrd: str | Path | None = None,
    decompress: str = "host",
    sim_window: tuple[int, int] = (0, 0),
) -> Boot:
    """Lay out a bzImage (and initrd) in RAM as a boot-protocol loader would; ``sim_window``:
    (virtual, physical) 2 MiB page of the simulator's pages in the boot page tables."""
    path = Path(path)
    data = read_regular(path, MAX_BZIMAGE, "bzImage", ImageError)
    hdr = parse_header(path, data)
    layout = LAYOUT
    raw_cmd = cmdline.encode() + b"\0"
    if hdr.cmdline_size and len(raw_cmd) > hdr.cmdline_size + 1:
        raise ImageError(f"{path}: command line is {len(raw_cmd) - 1} bytes, the kernel takes {hdr.cmdline_size}")
    vmlinux: Vmlinux | None = None
    if decompress == "host":
        vmlinux = vmlinux_segments(path, decompress_payload(path, data, hdr))
        entry, kernel = vmlinux.entry, vmlinux.segments
    else:
        pm = data[hdr.pm_offset :]
        kernel = [Segment(hdr.pref_address, pm, max(len(pm), hdr.init_size))]
        entry = hdr.pref_address + 0x200
        with contextlib.suppress(ImageError):  # symbols only: the guest decompresses it
            vmlinux = vmlinux_segments(path, decompress_payload(path, data, hdr))
    kernel_end = max(hdr.pref_address + hdr.init_size, *(s.addr + s.memsz for s in kernel))
    if kernel_end > ram_size:
        raise ImageError(f"{path}: the kernel needs RAM up to {kernel_end:#x}, the board has {ram_size:#x}")
    zp = bytearray(0x1000)
    zp[HDR : HDR + len(hdr.raw)] = hdr.raw
    zp[BP_TYPE_OF_LOADER] = 0xFF  # undefined loader
    zp[BP_LOADFLAGS] = (hdr.loadflags | LOADED_HIGH) & ~0x20  # loaded high; not quiet
    struct.pack_into("<I", zp, BP_CMD_LINE_PTR, layout.cmdline)
    struct.pack_into("<I", zp, BP_EXT_CMD_LINE_PTR, 0)
    struct.pack_into("<I", zp, BP_HARDWARE_SUBARCH, 0)  # X86_SUBARCH_PC
    segments = identity_tables(sim_window, layout)
    rd = None
    if initrd is not None:
        initrd = Path(initrd)
        rd = read_regular(initrd, ram_size, "initrd", ImageError)
        top = min(hdr.initrd_addr_max + 1, ram_size - 0x20000) & ~0xFFF
        addr = (top - len(rd)) & ~0xFFF
        if addr < kernel_end:
            raise ImageError(
                f"{initrd}: initrd of {len(rd)} bytes does not fit between the kernel's end {kernel_end:#x} "
                f"and {top:#x}"
            )
        struct.pack_into("<II", zp, BP_RAMDISK_IMAGE, addr, len(rd))
        segments.append(Segment(addr, rd, len(rd)))
    table = e820_map(ram_size)
    zp[BP_E820_ENTRIES] = len(table)
    for i, (addr, size, kind) in enumerate(table):
        struct.pack_into("<QQI", zp, BP_E820_TABLE + 20 * i, addr, size, kind)
    segments += [
        Segment(layout.zero_page, bytes(zp), 0x1000),
        Segment(layout.gdt, struct.pack(f"<{len(GDT)}Q", *GDT), 8 * len(GDT)),
        Segment(layout.cmdline, raw_cmd, len(raw_cmd)),
    ]
    segments += kernel
    image = Image(path, "x86_64", entry, segments, [])
    if vmlinux is None:
        return Boot(image, entry, layout.zero_page, ram_size, initrd=rd)
    return Boot(kallsyms_image(path, image, vmlinux), entry, layout.zero_page, ram_size, vmlinux.kernel_map, rd)


def kallsyms_image(path: Path, image: Image, vmlinux: Vmlinux) -> Image:
    """``image`` with the kernel's own symbols (its kallsyms tables, in the segment holding
    ``.rodata``); the image as it is when the kernel has none."""
    for seg in vmlinux.segments:
        try:
            linked, _ = with_kallsyms(image, seg.data, vmlinux.kernel_map)
        except ImageError:
            continue
        return linked
    return image
