"""``Regs``: the trapped registers as handlers see them, read and written through the engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from unicorn import UcError

from kprobesim.errors import GuestFault, ProbeError

from .insn import MASK64

MAX_ACCESS = 1 << 24  # the most one handler access may move (16 MiB)
SIGN = 1 << 63
END = 1 << 64  # one past the last address

if TYPE_CHECKING:
    from kprobesim.machine import Machine


class Regs:
    """Registers by name (``regs["a0"]``), ``pc``, ``arg(n)``, ``retval``; all writable.

    Also a RegView for the arch's simulate/step code (``read_mem``/``write_mem``).

    A register is read from the engine on first use and kept until :meth:`reset` (the registry
    resets its view at every trap, as the CPU may have run since); a write goes to the engine
    at once, so only what a handler changes is written. The view is valid while the handler
    runs (like Linux's ``pt_regs`` pointer); registers written behind its back (through the
    engine) during a handler are not seen by it.
    """

    __slots__ = ("_m", "_engine", "_read", "_write", "_spec", "_ids", "_privileged", "_lift", "_cache",
                 "_host_access", "_access_needed", "_file", "_direct", "_bits")

    def __init__(self, machine: Machine, in_trap: bool = False) -> None:
        self._m = machine
        engine = self._engine = machine.engine
        self._read = engine.reg_read
        self._spec: Any = machine.arch.module("regs")
        self._ids: dict[str, int] = self._spec.REG_IDS
        self._write = engine.reg_write
        #: name -> index in ``_file`` of the registers read and written straight in the
        #: engine's register file: only for a view used from trap hooks or between slices,
        #: where the file is current and the engine resumes from the stored PC.
        self._direct: dict[str, int] = {}
        self._file: Any = None
        direct = getattr(engine, "direct_registers", None) if in_trap else None
        if direct is not None:
            self._file, slots = direct
            self._direct = {name: slots[rid] for name, rid in self._ids.items() if rid in slots}
        #: name -> (a word of the CPU state, the register's bits it holds exactly): see bits()
        exact = getattr(engine, "exact_bits", None) if in_trap else None
        self._bits: dict[str, Any] = {n: exact[rid] for n, rid in self._ids.items() if rid in exact} if exact else {}
        # Control registers the host may only touch at the guest's highest privilege.
        self._privileged = frozenset(self._ids[n] for n in getattr(self._spec, "CSR_NAMES", ()))
        self._host_access = machine.traps.host_access
        self._access_needed = getattr(machine.traps, "host_access_needed", None)
        # None: not yet asked this trap whether host CSR access must lift the privilege.
        self._lift: bool | None = None
        self._cache: dict[int, int] = {}

    def word(self, name: str) -> tuple[Any, int] | None:
        """(the engine's register file, the index of ``name`` in it) when this view reads and
        writes that register straight there (values are ``& MASK64``); None otherwise. For
        the probe layer's hot paths, which then skip the view (it caches no such register)."""
        at = self._direct.get(name)
        return None if at is None else (self._file, at)

    def reset(self) -> None:
        """Forget what was read (the engine ran, or someone else wrote registers)."""
        self._cache.clear()
        self._lift = None

    def _id(self, name: str) -> int:
        try:
            return self._ids[name]
        except KeyError:
            raise KeyError(f"no register '{name}' on {self._m.arch.name}") from None

    def _needs_lift(self) -> bool:
        if self._lift is None:
            needed = self._access_needed
            self._lift = bool(needed()) if needed is not None else True
        return self._lift

    def __getitem__(self, name: str) -> int:
        at = self._direct.get(name)
        if at is not None:
            return self._file[at] & MASK64
        rid = self._ids.get(name)
        if rid is None:
            rid = self._id(name)
        value = self._cache.get(rid)
        if value is None:
            if rid in self._privileged and self._needs_lift():
                with self._host_access():
                    value = self._read(rid) & MASK64
            else:
                value = self._read(rid) & MASK64
            self._cache[rid] = value
        return value

    def __setitem__(self, name: str, value: int) -> None:
        at = self._direct.get(name)
        if at is not None and value.__class__ is int:  # a general register or the PC
            self._file[at] = value & MASK64
            return
        rid = self._ids.get(name)
        if rid is None:
            rid = self._id(name)
        self._cache.pop(rid, None)  # re-read: the engine may not keep every bit (x0, WARL CSRs)
        if rid in self._privileged and self._needs_lift():
            with self._host_access():
                self._write(rid, value & MASK64)
        else:
            self._write(rid, value & MASK64)
        if self._m._pages:  # translations noted in this trap may not hold (a CR3 or CR0 write)
            self._m._pages.clear()

    def bits(self, name: str, mask: int) -> int:
        """``self[name] & mask``; straight from the CPU state when the engine keeps those bits
        exactly there (x86's TF and IF), without computing the whole register."""
        exact = self._bits.get(name)
        if exact is not None and not mask & ~exact[1]:
            return exact[0].value & mask
        return self[name] & mask

    def __contains__(self, name: str) -> bool:
        return name in self._ids

    @property
    def pc(self) -> int:
        return self[self._spec.PC_REG]

    @pc.setter
    def pc(self, value: int) -> None:
        self[self._spec.PC_REG] = value

    @property
    def sp(self) -> int:
        return self[self._spec.SP_REG]

    @property
    def retval(self) -> int:
        return self[self._spec.RETVAL_REG]

    @retval.setter
    def retval(self, value: int) -> None:
        self[self._spec.RETVAL_REG] = value

    def arg(self, n: int) -> int:
        """The ``n``-th argument (1-based, like ``$argN``) by the arch's calling convention."""
        regs = self._spec.ARG_REGS
        if not 1 <= n <= len(regs):
            raise IndexError(f"$arg{n}: {self._m.arch.name} passes arguments 1..{len(regs)} in registers")
        return self[regs[n - 1]]

    def stack(self, n: int) -> int:
        """The ``n``-th u64 on the stack at the probe (``$stackN``)."""
        return int.from_bytes(self.read_mem(self.sp + self._spec.STACK_ARGS_OFFSET + 8 * n, 8), "little")

    def read_mem(self, addr: int, size: int) -> bytes:
        """``size`` bytes of guest memory (GuestFault where the guest has none)."""
        if not (
            addr.__class__ is int and size.__class__ is int and 0 <= size <= MAX_ACCESS and 0 <= addr <= MASK64
        ) or addr + size > END:
            self._check(addr, size, "read_mem")
        try:
            return self._m.read(addr & MASK64, size)
        except UcError:
            raise GuestFault(f"read_mem of {size} bytes at {addr & MASK64:#x}: not guest memory", self.pc) from None

    def write_mem(self, addr: int, data: bytes) -> None:
        """Write guest memory (GuestFault where the guest has none)."""
        if data.__class__ is not bytes:
            if not isinstance(data, bytearray | memoryview):
                raise ProbeError(f"write_mem takes bytes, not {type(data).__name__}")
            data = bytes(data)
        size = len(data)
        if not (addr.__class__ is int and size <= MAX_ACCESS and 0 <= addr <= MASK64 and addr + size <= END):
            self._check(addr, size, "write_mem")
        m, at = self._m, addr & MASK64
        if at < m._sim_end and m.sim_base < at + size:
            raise ProbeError(f"write_mem: {size} bytes at {at:#x} would overwrite the simulator's own pages")
        try:
            m.write(at, data)
        except UcError:
            raise GuestFault(
                f"write_mem of {len(data)} bytes at {addr & MASK64:#x}: not guest memory", self.pc
            ) from None

    def exchange_mem(self, addr: int, data: bytes) -> bytes:
        """Write guest memory and return what it held: ``read_mem`` then ``write_mem`` in one."""
        if data.__class__ is not bytes:
            data = bytes(data)
        size = len(data)
        if not (addr.__class__ is int and 0 < size <= MAX_ACCESS and 0 <= addr <= MASK64 and addr + size <= END):
            self._check(addr, size, "exchange_mem")
        m = self._m
        at = addr & MASK64
        if at < m._sim_end and m.sim_base < at + size:
            raise ProbeError(f"exchange_mem: {size} bytes at {at:#x} would overwrite the simulator's own pages")
        try:
            return m.exchange(at, data)
        except UcError:
            raise GuestFault(f"exchange_mem of {size} bytes at {at:#x}: not guest memory", self.pc) from None

    @staticmethod
    def _check(addr: int, size: int, what: str) -> None:
        if addr.__class__ is int and size.__class__ is int and 0 <= size <= MAX_ACCESS and -SIGN <= addr <= MASK64:
            if (addr & MASK64) + size <= 1 << 64:
                return  # the usual case
        if isinstance(addr, bool) or not isinstance(addr, int):
            raise ProbeError(f"{what}: the address must be an int, not {type(addr).__name__}")
        if not -SIGN <= addr <= MASK64:  # negative ones are two's complement, as in C
            raise ProbeError(f"{what}: {addr:#x} is not a 64-bit address")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_ACCESS:
            raise ProbeError(f"{what}: size {size!r} is not 0..{MAX_ACCESS} bytes")
        if (addr & MASK64) + size > 1 << 64:
            raise ProbeError(f"{what}: {size} bytes at {addr & MASK64:#x} run past the end of the address space")

    def pt_regs(self, **extra: int) -> bytes:
        """Linux's ``struct pt_regs`` for this arch (the eBPF context)."""
        return self._spec.pack_pt_regs(self.__getitem__, extra)

    def __repr__(self) -> str:
        return f"<Regs pc={self.pc:#x}>"
