"""x86_64 break/step: int3 probe breaks, slot copies with RIP-relative re-basing, TF stepping.

The variant ("tf" or "int3", see ``VARIANTS``) is chosen when decoding: decisions remember it
and every function here defaults to it. Protocol of one out-of-line step::

    d = decode(code, addr, variant)       # int3: control flow and IF users come back SIMULATE
    saved = mask_interrupts(regs, d)      # clears IF; remembers TF/IF as Linux does
    regs["rip"] = slot                    # slot bytes from make_slot(d, slot, variant)
    arm_single_step(regs)                 # "tf" only: set TF
    ... run until #DB (tf) or the int3 at slot + len (int3) ...
    while step_incomplete(d, regs, slot): # "tf" only: rep string ops trap per iteration
        ... run again until #DB ...
    disarm_single_step(regs, d)           # "tf" only: Unicorn does not clear TF itself
    after_step(d, regs, slot, saved)
    restore_interrupts(regs, saved)

The int3 variant's step ends on the int3 at ``step_break_addr(d, slot)`` = slot + length.
"""

from __future__ import annotations

from kprobesim.probes.insn import MASK64, Decision, Kind, RegView, SlotError, u64

from .decode import _BRANCH_1, FIX_ADD, FIX_CALL, FIX_CALL_INDIRECT, FIX_KEEP, FIX_PUSHF, VARIANTS, X86Insn

INT3 = b"\xcc"
PROBE_BREAK = INT3
#: The TF variant ends the step with the #DB trap: no step break.
STEP_BREAK = b""
#: The int3 variant's step break.
STEP_BREAK_INT3 = INT3
#: Bytes a slot needs at most: a 15-byte instruction and the int3 of the int3 variant.
SLOT_SIZE = 16
SLOT_ALIGN = 1

TF = 1 << 8
IF = 1 << 9
#: The registry always saves the flags around a step (mask_interrupts/restore_interrupts), even
#: where the machine holds interrupts itself: the saved word also keeps the guest's own TF, which
#: the TF variant's disarm_single_step() clears.
ALWAYS_SAVE_FLAGS = True


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown x86_64 step variant {variant!r}")


def _variant(d: Decision, variant: str | None) -> str:
    """The step variant for ``d``: the one it was decoded for, which ``variant`` must match."""
    made_for = d.info.variant if isinstance(d.info, X86Insn) else "tf"
    if variant is None:
        return made_for
    _check_variant(variant)
    if variant != made_for:
        raise SlotError(
            f"{d.addr:#x}: {d.text!r} was decoded for the {made_for!r} variant, not {variant!r}: "
            f"call decode(code, addr, variant={variant!r})"
        )
    return variant


def probe_break(d: Decision) -> bytes:
    """The break patched over the first byte of ``d``."""
    return INT3


def step_break(variant: str = "tf") -> bytes:
    """The bytes placed after the slot copy: none for "tf", int3 for "int3"."""
    _check_variant(variant)
    return STEP_BREAK_INT3 if variant == "int3" else STEP_BREAK


def make_slot(d: Decision, slot_addr: int, variant: str | None = None) -> bytes:
    """The copy of ``d`` to run at ``slot_addr``: RIP-relative displacement re-based.

    ``variant`` defaults to the one ``d`` was decoded for (and must match it). Raises SlotError
    when the re-based displacement does not fit in a signed 32-bit field.
    """
    variant = _variant(d, variant)
    if d.kind is not Kind.OOL:
        raise SlotError(f"{d.addr:#x}: {d.text!r} is {d.kind.value}, it takes no slot")
    info: X86Insn = d.info
    code = bytearray(d.raw)
    if info.rip_disp_offset is not None:
        new = d.addr + info.rip_disp - slot_addr  # same target from the slot
        if not -(1 << 31) <= new < (1 << 31):
            raise SlotError(
                f"{d.addr:#x}: {d.text!r}: RIP-relative target "
                f"{u64(d.end + info.rip_disp):#x} is out of reach from slot {slot_addr:#x}"
            )
        off = info.rip_disp_offset
        code[off : off + 4] = new.to_bytes(4, "little", signed=True)
    # TF: a trailing int3 as a backstop - a few instructions (pause) delay the #DB by one
    # instruction in the engine, and the step must never run past its slot.
    return bytes(code) + (INT3 if variant == "tf" else step_break(variant))


JMP_REL32 = 0xE9
#: Never boosted: hlt (an interrupt would return into the slot) and port I/O (devices stop the
#: engine after the access, inside the slot), besides branches and what needs a fix-up.
_NO_BOOST_1 = frozenset({0xF4, 0xE4, 0xE5, 0xE6, 0xE7, 0xEC, 0xED, 0xEE, 0xEF, 0x6C, 0x6D, 0x6E, 0x6F})


def boost_slot(d: Decision, slot_addr: int) -> bytes | None:
    """Linux's "boost": the copy followed by ``jmp rel32`` back to the next instruction, so the
    step needs no trap at its end. None when ``d`` cannot be boosted: a branch, call, ret or
    anything with a resume fix-up (pushf, call), cli/sti/popf, a rep string op, hlt, port I/O,
    a copy too long for the slot, or a target out of rel32 reach.

    Used only when no post-handler waits for the step's end and the guest's own TF is clear
    (see boost_allowed()); the copy's behaviour is the stepped copy's in both variants.
    """
    if d.kind is not Kind.OOL or not isinstance(d.info, X86Insn):
        return None
    info: X86Insn = d.info
    if info.fixup != FIX_ADD or info.rep_string or info.if_modifier or d.length + 5 > SLOT_SIZE:
        return None
    op = info.opcode
    if op and op[0] != 0x0F:
        if op[0] in _BRANCH_1 or op[0] in _NO_BOOST_1:
            return None
        if op[0] == 0xFF and info.modrm is not None and (info.modrm >> 3) & 7 in (2, 3, 4, 5):
            return None  # call/jmp through a register or memory
    elif len(op) >= 2 and 0x80 <= op[1] <= 0x8F:
        return None  # jcc rel32
    try:
        copy = make_slot(d, slot_addr)[: d.length]
    except SlotError:
        return None
    rel = d.end - (slot_addr + d.length + 5)
    if not -(1 << 31) <= rel < (1 << 31):
        return None
    return copy + bytes([JMP_REL32]) + rel.to_bytes(4, "little", signed=True)


def boost_allowed(regs: RegView) -> bool:
    """A boosted slot runs without the step's trap: not while the guest single-steps itself
    (its #DB would report the jump in the slot)."""
    return not regs.bits("rflags", TF)


def backstop_addr(d: Decision, slot_addr: int) -> int | None:
    """TF variant: the int3 after the copy that ends the step if no #DB came first."""
    return slot_addr + d.length if _variant(d, None) == "tf" else None


_REP_CONDITIONAL = (0xA6, 0xA7, 0xAE, 0xAF)  # cmps, scas: repe/repne also stop on ZF


def step_begin(d: Decision, regs: RegView) -> int | None:
    """State to remember at the start of a step: the count register of a rep string op."""
    info = d.info
    if not (isinstance(info, X86Insn) and info.rep_string) or _variant(d, None) != "tf":
        return None  # the int3 variant runs the whole rep op natively in its slot
    return regs["rcx"] & (0xFFFF_FFFF if info.addr32 else MASK64)


def step_extra_count(d: Decision, begin: int | None, regs: RegView) -> int:
    """Instructions the engine counts natively but not when single-stepped.

    Run freely, a rep string op that ends because its count reached zero is entered once more
    (the entry that sees the zero count and leaves); single-stepped with TF it is not. So such
    a step owes one instruction of virtual time.
    """
    info = d.info
    if begin is None or not begin or not isinstance(info, X86Insn):
        return 0
    if regs["rcx"] & (0xFFFF_FFFF if info.addr32 else MASK64):
        return 0
    if info.opcode[:1] and info.opcode[0] in _REP_CONDITIONAL:
        zf = bool(regs["rflags"] & (1 << 6))
        repne = 0xF2 in info.prefixes
        if zf == repne:  # the condition ended it, not the count
            return 0
    return 1


def step_break_addr(d: Decision, slot_addr: int, variant: str | None = None) -> int | None:
    """Address of the int3 ending the step (int3 variant), None for the TF variant."""
    variant = _variant(d, variant)
    return slot_addr + d.length if variant == "int3" else None


def is_probe_break(code: bytes) -> bool:
    """Is ``code[0]`` an int3?"""
    return bytes(code[:1]) == INT3


def is_step_break(code: bytes) -> bool:
    """Is ``code[0]`` the int3 variant's step break?"""
    return bytes(code[:1]) == INT3


def arm_single_step(regs: RegView) -> None:
    """Set TF so the CPU traps (#DB) after the next instruction."""
    regs["rflags"] = regs["rflags"] | TF


def disarm_single_step(regs: RegView, d: Decision | None = None) -> None:
    """Clear TF (Unicorn leaves it set after the #DB).

    Given the stepped decision, a popf keeps the TF it popped: native execution would set it.
    """
    if d is not None and isinstance(d.info, X86Insn) and d.info.opcode == b"\x9d":
        return
    regs["rflags"] = regs["rflags"] & ~TF


def step_incomplete(d: Decision, regs: RegView, slot_addr: int, variant: str | None = None) -> bool:
    """TF variant: did the #DB come between iterations of a rep string op (step again)?"""
    return (
        _variant(d, variant) == "tf" and isinstance(d.info, X86Insn) and d.info.rep_string
        and regs["rip"] == slot_addr
    )  # fmt: skip


def after_step(
    d: Decision, regs: RegView, slot_addr: int, saved: int | None = None, variant: str | None = None
) -> None:
    """Resume fix-ups once the step has ended (call after disarm_single_step()).

    int3 variant: rip = the probed address + length (branches are simulated, not stepped).
    TF variant (Linux resume_execution): ret and jmp *reg keep their IP; call *reg keeps its
    IP and gets its pushed return address moved from the slot to the original; call rel32
    gets both; pushf gets TF and IF in the pushed word restored from ``saved`` (the value
    mask_interrupts() returned; if None the current rflags' IF is used, which is right when
    restore_interrupts() ran first); everything else moves rip by ``orig - slot``.
    ``variant`` defaults to the one ``d`` was decoded for.
    """
    variant = _variant(d, variant)
    if variant == "int3":
        regs["rip"] = d.end
        return
    info: X86Insn = d.info
    delta = d.addr - slot_addr
    if info.fixup in (FIX_CALL, FIX_CALL_INDIRECT):
        sp = regs["rsp"]
        ret = int.from_bytes(regs.read_mem(sp, 8), "little")
        regs.write_mem(sp, u64(ret + delta).to_bytes(8, "little"))
    elif info.fixup == FIX_PUSHF:
        sp, size = regs["rsp"], info.opsize
        word = int.from_bytes(regs.read_mem(sp, size), "little")
        old = saved if saved is not None else regs["rflags"] & IF
        word = (word & ~(TF | IF)) | (old & (TF | IF))
        regs.write_mem(sp, word.to_bytes(size, "little"))
    if info.fixup not in (FIX_KEEP, FIX_CALL_INDIRECT):
        regs["rip"] = u64(regs["rip"] + delta)


def mask_interrupts(regs: RegView, d: Decision | None = None) -> int:
    """Clear IF for the step; return the TF/IF bits to restore (IF dropped for IF modifiers).

    Like Linux's kprobe_saved_flags: after cli/sti/popf the flag the instruction produced is
    kept, so the saved IF is left out for them.
    """
    flags = regs["rflags"]
    regs["rflags"] = flags & ~IF
    saved = flags & (TF | IF)
    if d is not None and isinstance(d.info, X86Insn) and d.info.if_modifier:
        saved &= ~IF
    return saved


def restore_interrupts(regs: RegView, saved: int) -> None:
    """OR the saved TF/IF back into rflags (Linux: ``regs->flags |= kprobe_saved_flags``)."""
    regs["rflags"] = regs["rflags"] | (saved & (TF | IF))


def in_user_mode(regs: RegView) -> bool:
    """Is the CPU at CPL 3 (a uprobe's single-step #DB comes from there, a kprobe's never)?"""
    return regs["cs"] & 3 == 3
