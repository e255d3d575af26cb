// SPDX-License-Identifier: MIT
/*
 * Round-robin scheduler.  tasks[0] (swapper) is the idle task: it runs only when no other task
 * is runnable.  The others run in table order; the timer interrupt sets need_resched and the trap
 * path calls schedule() before returning (preemption); tasks may also call schedule() themselves.
 */
#include "kernel.h"

struct task tasks[NR_TASKS];
struct task *current_task;
volatile int need_resched;
volatile u64 jiffies;

/* Kernel stacks of tasks 1..NR_TASKS-1 (the swapper runs on the boot stack); like every stack
 * they live in .bss.stack, which the boot code does not clear. */
static u8 kstacks[NR_TASKS - 1][KSTACK_SIZE] __aligned(16) __section(".bss.stack");

static void task_set_name(struct task *t, const char *name)
{
	size_t n = strlen(name);

	if (n > TASK_COMM_LEN - 1)
		n = TASK_COMM_LEN - 1;
	memset(t->comm, 0, sizeof(t->comm));
	memcpy(t->comm, name, n);
}

static struct task *pick_next(struct task *prev)
{
	int start = (int)(prev - tasks);

	for (int i = 1; i < NR_TASKS; i++) {
		int idx = (start + i) % NR_TASKS;

		if (idx != 0 && tasks[idx].state == TASK_RUNNABLE)
			return &tasks[idx];
	}
	if (prev != &tasks[0] && prev->state == TASK_RUNNABLE)
		return prev;
	return &tasks[0];
}

/* The scheduler entry: pick the next task and switch to it.  Callable with interrupts on or off. */
__probe_target void schedule(void)
{
	unsigned long flags = arch_irq_save();
	struct task *prev = current_task;
	struct task *next = pick_next(prev);

	need_resched = 0;
	if (next != prev) {
		arch_switch_prepare(next);
		current_task = next;
		switch_to(&prev->ksp, next->ksp);
		/* back here when prev is scheduled again */
	}
	arch_irq_restore(flags);
}

void sched_init(void)
{
	struct task *idle = &tasks[0];

	idle->pid = idle->tgid = 0;
	task_set_name(idle, "swapper");
	idle->state = TASK_RUNNABLE;
	idle->flags = TASK_FLAG_IDLE;
	idle->kstack_top = (unsigned long)boot_stack_top;
	current_task = idle;
}

static struct task *task_alloc(int idx, const char *name, u32 flags)
{
	struct task *t = &tasks[idx];

	t->pid = t->tgid = (u32)idx;
	task_set_name(t, name);
	t->flags = flags;
	t->state = TASK_BLOCKED;
	t->kstack_top = (unsigned long)&kstacks[idx - 1][KSTACK_SIZE];
	return t;
}

void kthread_create(int idx, const char *name, void (*fn)(long), long arg)
{
	struct task *t = task_alloc(idx, name, TASK_FLAG_KTHREAD);

	arch_task_init_kthread(t, fn, arg);
	t->state = TASK_RUNNABLE;
}

/* The user task starts blocked; wake_up() lets it run. */
void task_setup_user(int idx, const char *name, void (*entry)(void), unsigned long usp)
{
	struct task *t = task_alloc(idx, name, TASK_FLAG_USER);

	arch_task_init_user(t, entry, usp);
}

void wake_up(struct task *t)
{
	unsigned long flags = arch_irq_save();

	if (t->state == TASK_BLOCKED)
		t->state = TASK_RUNNABLE;
	arch_irq_restore(flags);
}

/* First C code of a new kernel thread (reached from the arch's kthread_trampoline). */
void kthread_entry(void (*fn)(long), long arg)
{
	arch_irq_enable();
	fn(arg);
	task_exit(0);
}

__noreturn void task_exit(long code)
{
	arch_irq_save();
	current_task->exit_code = code;
	current_task->state = TASK_DEAD;
	schedule();
	for (;;)
		;
}
