"""Prototypes of the implemented helpers, as Linux's ``struct bpf_func_proto`` describes them:
argument kinds, return kind, and whether the helper is GPL-only (``kernel/trace/bpf_trace.c``,
``kernel/bpf/helpers.c``, ``ringbuf.c``, ``stackmap.c``, ``bpf_iter.c``, ``queue_stack_maps.c``).
The verifier (:mod:`.absint`) checks each call against them.
"""

from __future__ import annotations

from dataclasses import dataclass

# argument kinds (enum bpf_arg_type, simplified to what the implemented helpers use)
ANYTHING = "anything"
MAP_PTR = "map_ptr"  # ARG_CONST_MAP_PTR
MAP_KEY = "map_key"  # ARG_PTR_TO_MAP_KEY: key_size initialised bytes
MAP_VALUE = "map_value"  # ARG_PTR_TO_MAP_VALUE: value_size initialised bytes
MAP_VALUE_OUT = "map_value_out"  # ARG_PTR_TO_MAP_VALUE | MEM_UNINIT: value_size writable bytes
MEM = "mem"  # ARG_PTR_TO_MEM | MEM_RDONLY: read, size in the next argument
MEM_OR_NULL = "mem_or_null"
UNINIT_MEM = "uninit_mem"  # ARG_PTR_TO_UNINIT_MEM: written, size in the next argument
UNINIT_MEM_OR_NULL = "uninit_mem_or_null"
SIZE = "size"  # ARG_CONST_SIZE: > 0, bounded
SIZE_OR_ZERO = "size_or_zero"
ALLOC_SIZE = "alloc_size"  # ARG_CONST_ALLOC_SIZE_OR_ZERO: a constant
CTX = "ctx"
FUNC = "func"  # ARG_PTR_TO_FUNC: a callback
STACK_OR_NULL = "stack_or_null"
CONST_STR = "const_str"  # a NUL-terminated string in a read-only map value
RINGBUF_MEM = "ringbuf_mem"  # ARG_PTR_TO_RINGBUF_MEM | OBJ_RELEASE
LONG_OUT = "long_out"  # ARG_PTR_TO_LONG (6.12: ARG_PTR_TO_FIXED_SIZE_MEM | MEM_UNINIT | MEM_ALIGNED, 8 bytes)

# return kinds
INTEGER = "integer"
VOID = "void"
MAP_VALUE_OR_NULL = "map_value_or_null"
RINGBUF_MEM_OR_NULL = "ringbuf_mem_or_null"
BTF_ID = "btf_id"


@dataclass(frozen=True)
class Proto:
    args: tuple[str, ...]
    ret: str = INTEGER
    gpl_only: bool = False


_PROBE_READ = Proto((UNINIT_MEM, SIZE_OR_ZERO, ANYTHING), gpl_only=True)
_NOARGS = Proto(())

PROTOS: dict[int, Proto] = {
    1: Proto((MAP_PTR, MAP_KEY), MAP_VALUE_OR_NULL),  # map_lookup_elem
    2: Proto((MAP_PTR, MAP_KEY, MAP_VALUE, ANYTHING)),  # map_update_elem
    3: Proto((MAP_PTR, MAP_KEY)),  # map_delete_elem
    4: _PROBE_READ,
    5: _NOARGS,  # ktime_get_ns
    6: Proto((MEM, SIZE), gpl_only=True),  # trace_printk (its 3 arguments are not checked)
    7: _NOARGS,  # get_prandom_u32
    8: _NOARGS,  # get_smp_processor_id
    12: Proto((CTX, MAP_PTR, ANYTHING), VOID),  # tail_call
    14: _NOARGS,  # get_current_pid_tgid
    15: _NOARGS,  # get_current_uid_gid
    16: Proto((UNINIT_MEM, SIZE)),  # get_current_comm
    25: Proto((CTX, MAP_PTR, ANYTHING, MEM, SIZE_OR_ZERO), gpl_only=True),  # perf_event_output
    27: Proto((CTX, MAP_PTR, ANYTHING), gpl_only=True),  # get_stackid
    35: Proto((), gpl_only=True),  # get_current_task
    37: Proto((MAP_PTR, ANYTHING)),  # current_task_under_cgroup
    42: _NOARGS,  # get_numa_node_id
    45: _PROBE_READ,  # probe_read_str
    58: Proto((CTX, ANYTHING), gpl_only=True),  # override_return
    67: Proto((CTX, UNINIT_MEM, SIZE_OR_ZERO, ANYTHING), gpl_only=True),  # get_stack
    87: Proto((MAP_PTR, MAP_VALUE, ANYTHING)),  # map_push_elem
    88: Proto((MAP_PTR, MAP_VALUE_OUT)),  # map_pop_elem
    89: Proto((MAP_PTR, MAP_VALUE_OUT)),  # map_peek_elem
    112: _PROBE_READ,  # probe_read_user
    113: _PROBE_READ,  # probe_read_kernel
    114: _PROBE_READ,  # probe_read_user_str
    115: _PROBE_READ,  # probe_read_kernel_str
    118: _NOARGS,  # jiffies64
    125: _NOARGS,  # ktime_get_boot_ns
    130: Proto((MAP_PTR, MEM, SIZE_OR_ZERO, ANYTHING)),  # ringbuf_output
    131: Proto((MAP_PTR, ALLOC_SIZE, ANYTHING), RINGBUF_MEM_OR_NULL),  # ringbuf_reserve
    132: Proto((RINGBUF_MEM, ANYTHING), VOID),  # ringbuf_submit
    133: Proto((RINGBUF_MEM, ANYTHING), VOID),  # ringbuf_discard
    134: Proto((MAP_PTR, ANYTHING)),  # ringbuf_query
    158: Proto((), BTF_ID, gpl_only=True),  # get_current_task_btf
    160: _NOARGS,  # ktime_get_coarse_ns
    164: Proto((MAP_PTR, FUNC, STACK_OR_NULL, ANYTHING)),  # for_each_map_elem
    165: Proto((UNINIT_MEM_OR_NULL, SIZE_OR_ZERO, CONST_STR, MEM_OR_NULL, SIZE_OR_ZERO), gpl_only=True),  # snprintf
    173: Proto((CTX,)),  # get_func_ip
    174: Proto((CTX,)),  # get_attach_cookie
    177: Proto((MEM, SIZE, MEM_OR_NULL, SIZE_OR_ZERO), gpl_only=True),  # trace_vprintk
    181: Proto((ANYTHING, FUNC, STACK_OR_NULL, ANYTHING)),  # loop
    182: Proto((MEM, SIZE, CONST_STR)),  # strncmp
    183: Proto((CTX, ANYTHING, LONG_OUT)),  # get_func_arg (fentry/fexit only)
    184: Proto((CTX, LONG_OUT)),  # get_func_ret (fentry/fexit only)
    185: Proto((CTX,)),  # get_func_arg_cnt (fentry/fexit only)
}
#: Helpers only trampoline programs (fentry/fexit) may call (tracing_prog_func_proto).
TRAMPOLINE_ONLY = frozenset({183, 184, 185})

#: Map types each map-taking helper accepts (Linux's check_map_func_compatibility); helpers not
#: listed take the keyed maps (hash, array, LRU, per-CPU, LPM trie).
KEYED = frozenset({1, 2, 5, 6, 9, 10, 11})
MAP_TYPES: dict[int, frozenset[int]] = {
    1: KEYED, 2: KEYED, 3: KEYED,
    12: frozenset({3}),  # tail_call: prog_array
    25: frozenset({4}),  # perf_event_output: perf_event_array
    27: frozenset({7}),  # get_stackid: stack_trace
    37: frozenset({8}),  # current_task_under_cgroup: cgroup_array
    87: frozenset({22, 23, 30}), 88: frozenset({22, 23}), 89: frozenset({22, 23, 30}),
    130: frozenset({27}), 131: frozenset({27}), 134: frozenset({27}),
    164: frozenset({1, 2, 5, 6, 9, 10}),
}
#: Map types only the helpers above may take (a prog array cannot be looked up, ...).
SPECIAL_MAPS = frozenset({3, 4, 7, 8, 22, 23, 27, 30})
