/* Two target flavors put field 'a' at different offsets: libbpf refuses the relocation. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
struct amb___l { int a; } __attribute__((preserve_access_index));
struct agree___l { int a; } __attribute__((preserve_access_index));
SEC("kprobe") __u64 ok(struct agree___l *s) { return s->a; }
SEC("kprobe") __u64 bad(struct amb___l *s) { return s->a; }
char LICENSE[] SEC("license") = "GPL";
