/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * Logging for the agent and the CLI: pr_warn when something failed or the
 * operator must act, pr_info for life-cycle events, pr_debug for detail.
 * Under systemd (stderr is the journal) lines go to the journal with their
 * priority; otherwise to stderr. libbpf's own output comes through here one
 * level lower.
 */
#ifndef SM_LOG_H
#define SM_LOG_H

enum sm_log_level {
	SM_LOG_WARN = 0,
	SM_LOG_INFO,
	SM_LOG_DEBUG,
	SM_LOG_LIBBPF, /* libbpf's debug output too (-vv) */
};

void sm_log_init(const char *prog, enum sm_log_level level);
void sm_log_set_level(enum sm_log_level level);
enum sm_log_level sm_log_get_level(void);
/* Silence libbpf, e.g. around probes that are expected to fail. */
void sm_log_libbpf_quiet(int quiet);

void sm_log(enum sm_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define pr_warn(...)  sm_log(SM_LOG_WARN, __VA_ARGS__)
#define pr_info(...)  sm_log(SM_LOG_INFO, __VA_ARGS__)
#define pr_debug(...) sm_log(SM_LOG_DEBUG, __VA_ARGS__)

#endif /* SM_LOG_H */
