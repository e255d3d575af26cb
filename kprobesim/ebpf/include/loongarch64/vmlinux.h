/* SPDX-License-Identifier: MIT */
/* kprobesim: vmlinux.h for loongarch64 (selects __TARGET_ARCH_loongarch, then the common header). */
#ifndef __KPROBESIM_VMLINUX_LOONGARCH64_H__
#define __KPROBESIM_VMLINUX_LOONGARCH64_H__
#ifndef __TARGET_ARCH_loongarch
#define __TARGET_ARCH_loongarch
#endif
#include "../vmlinux.h"
#endif
