"""The P-code engine: SLEIGH semantics (pypcode) behind Unicorn's Python API.

``PcodeEngine("loongarch64")`` runs LoongArch64 (Unicorn 2.1.4 has no LoongArch guest);
``PcodeEngine("riscv64")`` runs RV64GC with Unicorn 2.1.4's reporting conventions, as an oracle.

Layout:

- :mod:`.engine`     the Unicorn-shaped API, memory fast paths, hooks, dispatcher, snapshots;
- :mod:`.interp`     tier 0: a new block's P-code interpreted until it has run a few times;
- :mod:`.codegen`    P-code of a basic block -> one Python function (registers in locals);
- :mod:`.diskcache`  decoded blocks, compiled code and run counts kept on disk between runs;
- :mod:`.arch`       what an architecture model provides;
- :mod:`.loongarch`  LoongArch64 privileged model (CSRs, exceptions, timer, idle, DMW) and the
  instructions emitted instead of SLEIGH's (SLEIGH bugs, privileged semantics);
- :mod:`.riscv`      RV64GC with Unicorn's conventions;
- :mod:`.memory`     regions with Unicorn's mapping rules.

Differences from Unicorn a caller can notice:

- ``emu_stop()`` from a device callback, a memory hook or ``UC_HOOK_INTR`` behaves as in
  Unicorn (the access stays unretired / counted); from other contexts (e.g. a board timer
  callback) emulation stops at the next block boundary.
- A store into the block that is executing takes effect at the next block (LoongArch ``ibar``
  and riscv ``fence.i`` end the block); stores and ``mem_write`` invalidate translations at once.
- Registers read from UC_HOOK_MEM_READ/WRITE callbacks are current; registers written there are
  not seen by the rest of the running block.
- ``icount()`` follows the machine's Unicorn wrapper (kprobesim.engine.unicorn) exactly.
- Unimplemented SLEIGH user-ops raise :class:`UnimplementedUserOp` naming the op and the PC.
"""

from .codegen import UnimplementedUserOp
from .engine import PcodeEngine

__all__ = ["PcodeEngine", "UnimplementedUserOp"]
