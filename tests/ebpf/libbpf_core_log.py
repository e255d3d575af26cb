"""Run Debian's libbpf on an object with a custom kernel BTF and print its CO-RE decisions.

    python libbpf_core_log.py OBJ BTF

libbpf (``libbpf.so.1`` from ``libbpf1``, installed with ``libbpf-dev``) opens ``OBJ`` with
``btf_custom_path=BTF`` and loads it: CO-RE relocation happens in user space before the
programs reach the host kernel, and libbpf's debug log says what each relocation did
(``prog 'p': relo #0: patched insn #2 (ALU/ALU64) imm 8 -> 28``). Those lines are printed, one
a line, and the object is closed; whether the host kernel then accepts the programs does not
matter. Used by the CO-RE tests as an oracle nobody here wrote.
"""

from __future__ import annotations

import ctypes
import sys


class _OpenOpts(ctypes.Structure):
    """``struct bpf_object_open_opts`` of libbpf 1.1."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("object_name", ctypes.c_char_p),
        ("relaxed_maps", ctypes.c_bool),
        ("pin_root_path", ctypes.c_char_p),
        ("_removed_attach_prog_fd", ctypes.c_uint32),
        ("kconfig", ctypes.c_char_p),
        ("btf_custom_path", ctypes.c_char_p),
        ("kernel_log_buf", ctypes.c_char_p),
        ("kernel_log_size", ctypes.c_size_t),
        ("kernel_log_level", ctypes.c_uint32),
    ]


def main(obj_path: str, btf_path: str) -> int:
    lib = ctypes.CDLL("libbpf.so.1")
    libc = ctypes.CDLL(None)
    lines: list[str] = []
    printer = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)

    def log(_level: int, fmt: bytes, args: int) -> int:
        buf = ctypes.create_string_buffer(8192)
        libc.vsnprintf(buf, len(buf), fmt, ctypes.c_void_p(args))
        lines.append(buf.value.decode("utf-8", "replace"))
        return 0

    callback = printer(log)
    lib.libbpf_set_print(callback)
    opts = _OpenOpts(ctypes.sizeof(_OpenOpts))
    opts.btf_custom_path = btf_path.encode()
    lib.bpf_object__open_file.restype = ctypes.c_void_p
    obj = lib.bpf_object__open_file(obj_path.encode(), ctypes.byref(opts))
    if not obj:
        print("open failed", file=sys.stderr)
        return 1
    lib.bpf_object__load(ctypes.c_void_p(obj))
    lib.bpf_object__close(ctypes.c_void_p(obj))
    for line in "".join(lines).splitlines():
        print(line.removeprefix("libbpf: "))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
