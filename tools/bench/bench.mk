# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
# The bench's load generator. Included from the top-level Makefile;
# `make bench` runs tools/bench/run.sh, which uses it.

CONNBENCH := $(OUTPUT)/tools/connbench

.PHONY: bench-programs
bench-programs: $(CONNBENCH)
all: bench-programs

# It shares tests/helpers/helpers.h with the test helpers.
$(CONNBENCH): tools/bench/connbench.c | $(OUTPUT)/tools
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -Itests/helpers -MMD -MP $< -o $@
