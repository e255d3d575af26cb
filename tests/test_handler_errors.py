"""A Python handler that raises ends the run as a HandlerError: the handler, the probe, one line."""

from __future__ import annotations

import pytest
from fwpaths import UNICORN_ARCHES, firmware

from kprobesim.errors import HandlerError, SimError
from kprobesim.machine import Machine


def failing_pre(probe, regs):
    return 1 // 0


def failing_post(probe, regs):
    return {}["missing"]


def failing_return(inst, regs):
    return int("x")


def failing_entry(inst, regs):
    return inst.nothing


@pytest.mark.parametrize("arch", UNICORN_ARCHES)
@pytest.mark.parametrize(
    ("place", "expected"),
    [
        (lambda m: m.kprobe("do_work", pre=failing_pre),
         "pre handler failing_pre() of kprobe 'do_work' at do_work raised ZeroDivisionError: "
         "integer division or modulo by zero"),
        (lambda m: m.kprobe("do_work", post=failing_post),  # x86: runs in the #DB hook
         "post handler failing_post() of kprobe 'do_work' at do_work raised KeyError: 'missing'"),
        (lambda m: m.kretprobe("fib", handler=failing_return),
         "return handler failing_return() of kretprobe 'fib' at fib raised ValueError: "
         "invalid literal for int() with base 10: 'x'"),
        (lambda m: m.kretprobe("fib", entry=failing_entry),
         "entry handler failing_entry() of kretprobe 'fib' at fib raised AttributeError: "
         "'Instance' object has no attribute 'nothing'"),
    ],
    ids=["pre", "post", "return", "entry"],
)
def test_handler_error_names_handler_and_probe(arch, place, expected):
    m = Machine.load(firmware(arch))
    place(m)
    with pytest.raises(HandlerError) as e:
        m.run()
    assert str(e.value) == expected
    assert e.value.line() == f"kprobesim: handler error: {expected}" and "\n" not in e.value.line()
    assert isinstance(e.value.__cause__, Exception) and e.value.exit_status == 68


def test_multi_line_message_is_cut_to_its_first_line_and_sim_errors_pass_through():
    m = Machine.load(firmware("riscv64"))

    def chatty(probe, regs):
        raise RuntimeError("first line\nsecond line")

    m.kprobe("do_work", pre=chatty)
    with pytest.raises(HandlerError, match=r"raised RuntimeError: first line$"):
        m.run()
    m = Machine.load(firmware("riscv64"))

    def stop(probe, regs):
        raise SimError("handler asked to stop")

    m.kprobe("do_work", pre=stop)
    with pytest.raises(SimError, match="^handler asked to stop$") as e:
        m.run()
    assert type(e.value) is SimError
