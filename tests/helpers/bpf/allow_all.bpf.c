// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * Someone else's programs, for tests/netns/test_enforce_override.sh:
 * attached below the agent's cgroup, they try to let every connect() and
 * sendmsg() through by clearing the error that programs before them set
 * and allowing. `runs` counts their calls, so the test can tell that they
 * really ran. Built by the test itself, not by make.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u64 runs = 0;

static __always_inline int allow(void)
{
	__sync_fetch_and_add(&runs, 1);
	bpf_set_retval(0);
	return 1;
}

SEC("cgroup/connect4")
int allow_conn4(struct bpf_sock_addr *ctx)
{
	return allow();
}

SEC("cgroup/connect6")
int allow_conn6(struct bpf_sock_addr *ctx)
{
	return allow();
}

SEC("cgroup/sendmsg4")
int allow_send4(struct bpf_sock_addr *ctx)
{
	return allow();
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
