# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
# Test programs: unit tests (cmocka) and the helpers integration tests run.
# Included from the top-level Makefile.

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(OUTPUT)/tests/%,$(UNIT_SRCS))
HELPER_SRCS := $(wildcard tests/helpers/*.c)
HELPER_BINS := $(patsubst tests/helpers/%.c,$(OUTPUT)/tests/%,$(HELPER_SRCS))
# Each unit test names the objects it links (test_<name>_OBJS).
test_policy_OBJS := agent/policy.o agent/log.o
test_flowlog_OBJS := agent/flowlog.o agent/log.o
test_prom_OBJS := agent/prom.o agent/log.o
test_http_OBJS := agent/http.o agent/log.o

.PHONY: test-programs
test-programs: $(UNIT_BINS) $(HELPER_BINS)

.SECONDEXPANSION:
$(OUTPUT)/tests/test_%: tests/unit/test_%.c \
		$$(addprefix $(OUTPUT)/,$$(test_$$*_OBJS)) | $(OUTPUT)/tests
	$(call msg,CC-TEST,$@)
	$(Q)$(CC) $(CFLAGS) -Wno-missing-prototypes -MMD -MP $< \
		$(addprefix $(OUTPUT)/,$(test_$*_OBJS)) $(LIBS) -lcmocka -o $@

$(OUTPUT)/tests/%: tests/helpers/%.c | $(OUTPUT)/tests
	$(call msg,CC-TEST,$@)
	$(Q)$(CC) $(CFLAGS) -MMD -MP $< -lpthread -o $@
