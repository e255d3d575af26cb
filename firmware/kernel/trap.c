// SPDX-License-Identifier: MIT
/* The C side of traps: timer interrupts, system calls, unexpected exceptions. */
#include "kernel.h"

u64 syscall_count;
u64 user_mode_syscalls;

/* The C timer handler: re-arm the timer, count the tick, ask for a reschedule. */
__probe_target void timer_interrupt(void)
{
	arch_timer_rearm();
	jiffies = jiffies + 1;
	need_resched = 1;
}

static long sys_write(long fd, const char *buf, long len)
{
	unsigned long off = (unsigned long)buf - RAM_START; /* wraps around below RAM */

	if (fd != 1 && fd != 2)
		return -EBADF;
	if (len < 0 || off > RAM_END - RAM_START || (unsigned long)len > RAM_END - RAM_START - off)
		return -EFAULT;
	console_write(buf, (size_t)len);
	return len;
}

/* The C syscall dispatcher: nr and up to three arguments, returns the result register. */
__probe_target long handle_syscall(long nr, long a0, long a1, long a2)
{
	syscall_count = syscall_count + 1;
	switch (nr) {
	case SYS_write:
		return sys_write(a0, (const char *)a1, a2);
	case SYS_getpid:
		return (long)current_task->tgid;
	case SYS_sched_yield:
		schedule();
		return 0;
	case SYS_exit:
		task_exit(a0);
	default:
		return -ENOSYS;
	}
}

static __noreturn __noinline void trap_panic(struct pt_regs *regs, unsigned long cause)
{
	/* A fault after kernel_exit() (e.g. a board without the exit device): stop quietly. */
	if (kernel_exiting)
		for (;;)
			;
	printk("PANIC: unexpected trap cause=%lx pc=%lx task=%s\n", cause, PT_REGS_PC(regs),
	       current_task ? current_task->comm : "?");
	kernel_exit(99);
}

/* Called by the arch trap entry with interrupts off; cause is mcause / ESTAT / the vector. */
void trap_handler(struct pt_regs *regs, unsigned long cause)
{
	switch (arch_trap_kind(regs, cause)) {
	case TRAP_TIMER:
		timer_interrupt();
		break;
	case TRAP_SYSCALL: {
		if (arch_from_user(regs))
			user_mode_syscalls = user_mode_syscalls + 1;
		PT_REGS_SYSCALL_ADVANCE(regs);
		long ret = handle_syscall(PT_REGS_SYSNR(regs), PT_REGS_ARG0(regs),
					  PT_REGS_ARG1(regs), PT_REGS_ARG2(regs));
		PT_REGS_RET(regs) = ret;
		break;
	}
	default:
		trap_panic(regs, cause);
	}
	if (need_resched)
		schedule();
}
NOKPROBE(trap_handler);
NOKPROBE(trap_panic);
