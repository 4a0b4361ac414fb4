# SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
#
# sockmesh: `make` builds build/sockmesh-agent and build/sockmesh.
# `make help` lists every target and variable.

OUTPUT ?= build
V ?= 0
PREFIX ?= /usr/local
DESTDIR ?=

CC ?= gcc
CLANG ?= clang
BPFTOOL ?= bpftool
LLVM_STRIP ?= llvm-strip
ARCH := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)

ifeq ($(V),1)
Q =
msg =
else
Q = @
msg = @printf '  %-9s %s\n' "$(1)" "$(2)";
endif

WARNINGS := -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes \
	    -Wstrict-prototypes -Wformat-security \
	    -Wdeclaration-after-statement
CFLAGS ?= -O2 -g
CFLAGS += $(WARNINGS) -std=gnu11 -D_GNU_SOURCE -Iinclude -Iagent -I$(OUTPUT)
LIBS := -lbpf -lelf -lz -lyaml -lmicrohttpd -ljson-c -lsystemd -lpthread

BPF_CFLAGS := -g -O2 --target=bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) \
	      -Wall -Wextra -Werror -Wshadow -Wdeclaration-after-statement \
	      -Iinclude -Ibpf -idirafter /usr/include/$(MULTIARCH)

BPF_OBJ := $(OUTPUT)/sockmesh.bpf.o
SKEL := $(OUTPUT)/sockmesh.skel.h

# Code the agent and the CLI share.
COMMON_SRCS := agent/log.c agent/policy.c agent/cgroup.c agent/pins.c \
	       agent/mapiter.c \
	       agent/names.c agent/jsonout.c
AGENT_SRCS := agent/main.c agent/loader.c agent/compile.c agent/apply.c \
	      agent/events.c agent/flowlog.c agent/metrics.c agent/http.c \
	      agent/prom.c agent/selfcheck.c agent/api.c agent/drain.c
CLI_SRCS := tools/sockmesh.c

COMMON_OBJS := $(patsubst %.c,$(OUTPUT)/%.o,$(COMMON_SRCS))
AGENT_OBJS := $(patsubst %.c,$(OUTPUT)/%.o,$(AGENT_SRCS))
CLI_OBJS := $(patsubst %.c,$(OUTPUT)/%.o,$(CLI_SRCS))

AGENT := $(OUTPUT)/sockmesh-agent
CLI := $(OUTPUT)/sockmesh

.PHONY: all deps test test-unit test-load test-netns demo bench install \
	uninstall clean check help
.DELETE_ON_ERROR:
.SECONDARY:

all: $(AGENT) $(CLI) test-programs

help:
	@echo 'Targets:'
	@echo '  all (default)  build/sockmesh-agent, build/sockmesh, test helpers'
	@echo '  deps           install the Debian packages the project needs'
	@echo '  test           every test tier (unit, load, netns); needs root'
	@echo '  demo           a sandboxed mesh with real traffic; needs root'
	@echo '  bench          connect-rate ratios and per-program ns/run; root'
	@echo '  install        agent, CLI, header, systemd unit under PREFIX'
	@echo '  uninstall      remove what install put there'
	@echo '  check          clang-format and clang --analyze'
	@echo '  clean          remove $(OUTPUT)/'
	@echo 'Variables:'
	@echo '  V=1            print full commands'
	@echo '  OUTPUT=dir     build directory (default build)'
	@echo '  PREFIX=dir     install prefix (default /usr/local)'
	@echo '  DESTDIR=dir    install into a staging root'
	@echo '  TESTS=pattern  run only tests whose name matches (make test)'

# Packages come from the project's own list; only missing ones are
# installed, and apt is not touched at all when nothing is missing.
deps:
	$(Q)./tools/deps.sh

# --- BPF object and skeleton ---

$(OUTPUT) $(OUTPUT)/agent $(OUTPUT)/tools $(OUTPUT)/tests:
	$(Q)mkdir -p $@

$(BPF_OBJ): bpf/sockmesh.bpf.c | $(OUTPUT)
	$(call msg,CLANG-BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -MMD -MP -MT $@ -MF $@.d -c $< -o $@.tmp
	$(Q)$(BPFTOOL) gen object $@ $@.tmp
	$(Q)rm -f $@.tmp

$(SKEL): $(BPF_OBJ)
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name sockmesh > $@.tmp && mv $@.tmp $@

# --- host programs ---

$(OUTPUT)/agent/%.o: agent/%.c | $(OUTPUT)/agent
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(OUTPUT)/tools/%.o: tools/%.c | $(OUTPUT)/tools
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# Everything that includes the skeleton waits for it.
$(OUTPUT)/agent/loader.o $(OUTPUT)/agent/main.o \
$(OUTPUT)/agent/drain.o: $(SKEL)

$(AGENT): $(AGENT_OBJS) $(COMMON_OBJS)
	$(call msg,LD,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LIBS) -o $@

$(CLI): $(CLI_OBJS) $(COMMON_OBJS)
	$(call msg,LD,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LIBS) -o $@

include tests/tests.mk
include tools/bench/bench.mk

# --- running ---

test: deps all
	$(Q)./tests/run $(if $(TESTS),--filter '$(TESTS)')

demo: deps all
	$(Q)./examples/demo.sh

bench: deps all
	$(Q)./tools/bench/run.sh

# The unit in deploy/ names the binaries under /usr/local; the installed
# copy names them under PREFIX.
install: all
	install -D -m 0755 $(AGENT) $(DESTDIR)$(PREFIX)/sbin/sockmesh-agent
	install -D -m 0755 $(CLI) $(DESTDIR)$(PREFIX)/bin/sockmesh
	install -D -m 0644 include/sockmesh/sockmesh.h \
		$(DESTDIR)$(PREFIX)/include/sockmesh/sockmesh.h
	install -d $(DESTDIR)/etc/systemd/system
	sed 's|/usr/local/|$(PREFIX)/|g' deploy/sockmesh-agent.service \
		>$(DESTDIR)/etc/systemd/system/sockmesh-agent.service
	chmod 0644 $(DESTDIR)/etc/systemd/system/sockmesh-agent.service
	install -D -m 0644 examples/policy.yaml \
		$(DESTDIR)/etc/sockmesh/policy.yaml.example

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/sbin/sockmesh-agent \
	      $(DESTDIR)$(PREFIX)/bin/sockmesh \
	      $(DESTDIR)$(PREFIX)/include/sockmesh/sockmesh.h \
	      $(DESTDIR)/etc/systemd/system/sockmesh-agent.service \
	      $(DESTDIR)/etc/sockmesh/policy.yaml.example

check:
	$(Q)clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')
	$(Q)for f in $(COMMON_SRCS) $(AGENT_SRCS) $(CLI_SRCS); do \
		$(CLANG) --analyze $(filter-out -Werror,$(CFLAGS)) \
			-Xanalyzer -analyzer-output=text $$f -o /dev/null \
			|| exit 1; done

clean:
	rm -rf $(OUTPUT)

-include $(wildcard $(OUTPUT)/*.d $(OUTPUT)/*/*.d $(OUTPUT)/*/*/*.d)
