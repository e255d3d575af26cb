/* SPDX-License-Identifier: MIT */
/* kprobesim: vmlinux.h for x86_64 (selects __TARGET_ARCH_x86, then the common header). */
#ifndef __KPROBESIM_VMLINUX_X86_64_H__
#define __KPROBESIM_VMLINUX_X86_64_H__
#ifndef __TARGET_ARCH_x86
#define __TARGET_ARCH_x86
#endif
#include "../vmlinux.h"
#endif
