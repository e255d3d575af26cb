// SPDX-License-Identifier: MIT
/* Freestanding string routines and the console (printk). */
#include "kernel.h"

__probe_target void *memcpy(void *dst, const void *src, size_t n)
{
	u8 *d = dst;
	const u8 *s = src;

	if ((((uintptr_t)d | (uintptr_t)s) & 7) == 0) {
		for (; n >= 8; n -= 8, d += 8, s += 8)
			*(u64 *)d = *(const u64 *)s;
	}
	for (; n; n--)
		*d++ = *s++;
	return dst;
}

__noinline void *memset(void *dst, int c, size_t n)
{
	u8 *d = dst;

	for (; n; n--)
		*d++ = (u8)c;
	return dst;
}

__probe_target size_t strlen(const char *s)
{
	const char *p = s;

	while (*p)
		p++;
	return (size_t)(p - s);
}

__noinline int strcmp(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return (int)(u8)*a - (int)(u8)*b;
}

void console_write(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		arch_putc(s[i]);
}

/* Format v in base 10 or 16 into the end of buf; returns the first digit. */
static char *format_unsigned(char *end, u64 v, unsigned base)
{
	static const char digits[] = "0123456789abcdef";
	char *p = end;

	do {
		*--p = digits[v % base];
		v /= base;
	} while (v);
	return p;
}

static void emit_padded(const char *s, size_t len, int width, char pad, int neg)
{
	int total = (int)len + neg;

	if (neg && pad == '0')
		arch_putc('-');
	for (; total < width; total++)
		arch_putc(pad);
	if (neg && pad != '0')
		arch_putc('-');
	console_write(s, len);
}

/*
 * A small printf: %s %c %d %u %x %p %% with an optional '0' flag, a width and the 'l' length
 * modifier (%ld, %lu, %lx read a long; %p reads a pointer).
 */
void printk(const char *fmt, ...)
{
	__builtin_va_list ap;
	char buf[24];
	char *end = buf + sizeof(buf);

	__builtin_va_start(ap, fmt);
	for (const char *f = fmt; *f; f++) {
		if (*f != '%') {
			arch_putc(*f);
			continue;
		}
		f++;
		char pad = ' ';
		int width = 0;

		if (*f == '0') {
			pad = '0';
			f++;
		}
		while (*f >= '0' && *f <= '9')
			width = width * 10 + (*f++ - '0');
		int is_long = 0;

		while (*f == 'l') {
			is_long = 1;
			f++;
		}
		switch (*f) {
		case 's': {
			const char *s = __builtin_va_arg(ap, const char *);

			if (!s)
				s = "(null)";
			emit_padded(s, strlen(s), width, ' ', 0);
			break;
		}
		case 'c':
			arch_putc((char)__builtin_va_arg(ap, int));
			break;
		case 'd': {
			long v = is_long ? __builtin_va_arg(ap, long) : __builtin_va_arg(ap, int);
			u64 mag = v < 0 ? (u64)0 - (u64)v : (u64)v;
			char *p = format_unsigned(end, mag, 10);

			emit_padded(p, (size_t)(end - p), width, pad, v < 0);
			break;
		}
		case 'u':
		case 'x':
		case 'p': {
			u64 v = (is_long || *f == 'p') ? __builtin_va_arg(ap, u64)
						       : __builtin_va_arg(ap, unsigned int);
			char *p = format_unsigned(end, v, *f == 'u' ? 10 : 16);

			emit_padded(p, (size_t)(end - p), width, pad, 0);
			break;
		}
		case '%':
			arch_putc('%');
			break;
		default:
			arch_putc('%');
			if (!*f)
				goto out;
			arch_putc(*f);
			break;
		}
	}
out:
	__builtin_va_end(ap);
}
