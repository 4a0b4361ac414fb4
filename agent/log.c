// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <bpf/libbpf.h>
#include <systemd/sd-journal.h>

#include "log.h"

static struct {
	const char *prog;
	enum sm_log_level level;
	int journal;
	int libbpf_quiet;
} g_log = {.prog = "sockmesh", .level = SM_LOG_INFO};

/* systemd sets JOURNAL_STREAM to "dev:inode" of the stream on stderr. */
static int stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long dev, ino;
	struct stat st;

	if (!js || sscanf(js, "%lu:%lu", &dev, &ino) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st))
		return 0;
	return st.st_dev == dev && st.st_ino == ino;
}

static void vlog(enum sm_log_level level, const char *fmt, va_list ap)
{
	static const int prio[] = {LOG_WARNING, LOG_INFO, LOG_DEBUG, LOG_DEBUG};

	if (level > g_log.level)
		return;
	if (g_log.journal) {
		sd_journal_printv(prio[level], fmt, ap);
		return;
	}
	fprintf(stderr, "%s: ", g_log.prog);
	vfprintf(stderr, fmt, ap);
	if (fmt[0] && fmt[strlen(fmt) - 1] != '\n')
		fputc('\n', stderr);
}

void sm_log(enum sm_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(level, fmt, ap);
	va_end(ap);
}

/*
 * libbpf's levels, one lower (its warnings are our info), and indented
 * under the agent's own line that says what failed.
 */
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	enum sm_log_level ours;
	char *text, *line, *next;

	if (g_log.libbpf_quiet)
		return 0;
	switch (level) {
	case LIBBPF_WARN: ours = SM_LOG_INFO; break;
	case LIBBPF_INFO: ours = SM_LOG_DEBUG; break;
	default: ours = SM_LOG_LIBBPF; break;
	}
	if (ours > g_log.level || vasprintf(&text, fmt, ap) < 0)
		return 0;
	for (line = text; *line; line = next) {
		next = strchrnul(line, '\n');
		if (*next)
			*next++ = '\0';
		sm_log(ours, "  %s", line);
	}
	free(text);
	return 0;
}

void sm_log_init(const char *prog, enum sm_log_level level)
{
	g_log.prog = prog;
	g_log.level = level;
	g_log.journal = stderr_is_journal();
	libbpf_set_print(libbpf_print);
}

void sm_log_set_level(enum sm_log_level level)
{
	g_log.level = level;
}

enum sm_log_level sm_log_get_level(void)
{
	return g_log.level;
}

void sm_log_libbpf_quiet(int quiet)
{
	g_log.libbpf_quiet = quiet;
}
