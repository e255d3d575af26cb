"""A Linux guest on a board (riscv64 ``virt``, x86_64 ``pc``) booted to the first instruction of
its initramfs's ``/init`` in user mode and snapshotted there: where ``compare --board`` starts
(Linux's early boot rewrites function entries, so probes go in once init runs).

Boots are kept per process, keyed by what defines them (the board, the kernel's and initrd's
files by path, size and modification time, the command line, the firmware, the RAM size):
asking again for the same guest restores its snapshot instead of booting again, so one process
(a test session, a Python user comparing several probe sets) boots each guest once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .arch import get_arch
from .errors import ImageError, SimError, UsageError
from .files import open_regular, read_regular
from .guest.initramfs import init_entry
from .machine import Machine, Snapshot
from .probes.regs import Regs

BOARD_ARCH = {"virt": "riscv64", "pc": "x86_64"}
BOOT_BUDGET = 3_000_000_000  # instructions from reset to /init (Debian's kernels, tests' command lines: 0.37-0.54 G)
BOOT_TIMEOUT = 3600.0


@dataclass(frozen=True)
class LinuxGuest:
    """What a boot is made of. ``bios`` and ``memory`` apply to ``virt`` only (None: the
    board's defaults); ``append`` None is the board's default command line."""

    board: str
    image: str
    initrd: str
    append: str | None = None
    bios: str | None = None
    memory: int | None = None

    def __post_init__(self) -> None:
        if self.board not in BOARD_ARCH:
            raise UsageError(f"no Linux board {self.board!r} (one of {', '.join(BOARD_ARCH)})")
        if self.board == "pc" and (self.bios is not None or self.memory is not None):
            raise UsageError("--bios and -m apply to --board virt, not pc")

    @property
    def arch(self) -> str:
        return BOARD_ARCH[self.board]

    def key(self) -> tuple:
        """This guest with its files' identities (the same path rewritten is another guest)."""
        files = []
        for path in (self.image, self.initrd, self.bios):
            try:
                st = Path(path).stat() if path not in (None, "none", "builtin") else None
            except OSError:
                st = None
            files.append((str(Path(path).resolve()) if st else path, st and (st.st_size, st.st_mtime_ns)))
        return (self.board, self.append, self.memory, *files)

    def machine(self, step_variant: str | None = None) -> Machine:
        """A fresh machine at reset with this guest's board, kernel and initrd."""
        if self.board == "pc":
            from .board.pc import PcBoard

            board = PcBoard(append=self.append, initrd=self.initrd)
            return Machine(get_arch("x86_64"), board.load(self.image), step_variant=step_variant, board=board)
        from .board.virt import DEFAULT_MEMORY, Virt, VirtOptions, linux_image_offset
        from .guest.linux import with_kallsyms
        from .image import load_image

        with open_regular(Path(self.image), "kernel image", ImageError) as f:
            head = f.read(64)
        bios = self.bios or ("builtin" if linux_image_offset(head) is not None else "none")
        virt = Virt(VirtOptions(memory=self.memory or DEFAULT_MEMORY, append=self.append or "",
                                initrd=self.initrd, bios=bios))  # fmt: skip
        image = load_image(self.image, arch="riscv64", base=virt.image_base_for(head))
        if image.arch != "riscv64":
            raise ImageError(f"{image.path}: a {image.arch} image cannot run on the riscv64 virt board")
        boot_map = None
        if len(image.symbols) < 2:  # a Linux Image: symbols from the kernel's own kallsyms
            image, boot_map = with_kallsyms(image)
        m = Machine(get_arch("riscv64"), image, step_variant=step_variant, board=virt)
        if boot_map is not None:
            m.boot_maps.append(boot_map)
        return m


@dataclass
class Booted:
    """A guest's machine and its snapshot at ``/init``'s first instruction."""

    guest: LinuxGuest
    machine: Machine
    snapshot: Snapshot
    init_entry: int
    boot_instructions: int

    def restore(self, step_variant: str | None = None) -> Machine:
        """The machine back at init's first instruction, no probes placed, stepping kprobes with
        ``step_variant`` (None: the arch's default)."""
        self.machine.restore(self.snapshot)
        self.machine.step_variant = step_variant
        return self.machine


_BOOTED: dict[tuple, Booted] = {}


def booted_guests() -> int:
    """How many boots this process keeps."""
    return len(_BOOTED)


def boot_to_init(guest: LinuxGuest, max_insns: int = BOOT_BUDGET, timeout: float = BOOT_TIMEOUT) -> Booted:
    """``guest`` booted to ``/init``'s first user-mode instruction and snapshotted there, once
    per process (later calls give the same boot; :meth:`Booted.restore` goes back to it)."""
    return boot_all([guest], max_insns, timeout)[0]


def boot_all(guests: list[LinuxGuest], max_insns: int = BOOT_BUDGET, timeout: float = BOOT_TIMEOUT) -> list[Booted]:
    """:func:`boot_to_init` of each guest; every kernel and initrd is loaded and checked before
    the first boot starts (a bad file is reported at once, not after another guest's boot)."""
    ready = {}
    for guest in guests:
        key = guest.key()
        if key not in _BOOTED and key not in ready:
            entry = init_entry(read_regular(Path(guest.initrd), 1 << 30, "initrd", ImageError))
            ready[key] = (guest.machine(), entry)
    for key, (m, entry) in ready.items():
        m.run_to(entry, max_insns=max_insns, timeout=timeout)
        in_user_mode = getattr(m.arch.module("step"), "in_user_mode", None)
        if in_user_mode is not None and not in_user_mode(Regs(m)):
            raise SimError(f"stopped at /init's entry {entry:#x} in kernel mode (the kernel runs code there)")
        _BOOTED[key] = Booted(next(g for g in guests if g.key() == key), m, m.snapshot(), entry, m.instructions)
    return [_BOOTED[guest.key()] for guest in guests]
