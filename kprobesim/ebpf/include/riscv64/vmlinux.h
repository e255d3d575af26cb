/* SPDX-License-Identifier: MIT */
/* kprobesim: vmlinux.h for riscv64 (selects __TARGET_ARCH_riscv, then the common header). */
#ifndef __KPROBESIM_VMLINUX_RISCV64_H__
#define __KPROBESIM_VMLINUX_RISCV64_H__
#ifndef __TARGET_ARCH_riscv
#define __TARGET_ARCH_riscv
#endif
#include "../vmlinux.h"
#endif
