"""CPU engines behind one interface: the subset of Unicorn's Python API the machine uses.

Every engine offers, with Unicorn's signatures, constants (``unicorn.unicorn_const``) and
error type (``unicorn.UcError``):

- ``mem_map(addr, size, perms)``, ``mem_unmap``, ``mem_protect``, ``mem_read``, ``mem_write``,
  ``mem_regions()``, ``mmio_map(addr, size, read_cb, read_ud, write_cb, write_ud)``;
- ``reg_read(id)``, ``reg_write(id, value)`` (riscv64: ``unicorn.riscv_const`` ids;
  x86_64: ``unicorn.x86_const``; loongarch64: :mod:`kprobesim.engine.pcode.loongarch_const`);
- ``hook_add(type, cb, user_data=None, begin=1, end=0, arg1=0)`` / ``hook_del(handle)`` for
  UC_HOOK_CODE, UC_HOOK_BLOCK (ranged), UC_HOOK_INTR, UC_HOOK_INSN_INVALID, UC_HOOK_MEM_*;
- ``emu_start(begin, until, timeout=0, count=0)``, ``emu_stop()``;
- ``context_save()`` / ``context_restore(ctx)``, ``ctl_remove_cache(begin, end)``;
- ``icount()``: instructions *started* by the last ``emu_start``: an instruction that trapped
  (a break, an exception reported through UC_HOOK_INTR or UC_HOOK_INSN_INVALID) counts, one that
  was not started because ``count`` was reached does not. The machine derives virtual time from it.
"""

from unicorn.unicorn_const import UC_MEM_FETCH_PROT, UC_MEM_FETCH_UNMAPPED, UC_MEM_WRITE_PROT, UC_MEM_WRITE_UNMAPPED


def access_kind(access: int) -> str:
    """``load``, ``store`` or ``fetch`` for an engine's UC_MEM_* access code."""
    if access in (UC_MEM_FETCH_UNMAPPED, UC_MEM_FETCH_PROT):
        return "fetch"
    if access in (UC_MEM_WRITE_UNMAPPED, UC_MEM_WRITE_PROT):
        return "store"
    return "load"
