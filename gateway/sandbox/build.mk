#
# The sandbox's pattern functions (gateway/sandbox/sandbox_pattern.c)
# against LuaJIT's own string library.  Included by the top-level
# Makefile, which runs from the top of the tree and sets BUILD:
#
#   $(BUILD)/bin/sandbox-pattern-test         differential unit tests and
#                                             the budget's, TAP output
#   $(BUILD)/bin/sandbox-pattern-fuzz-replay  the fuzz target over its seed
#                                             corpus and crashers, no
#                                             libFuzzer, TAP output
#   $(BUILD)/fuzz/sandbox-pattern-fuzz        the libFuzzer target
#
#   make fuzz-pattern                         FUZZ_SECONDS of it
#   make fuzz-pattern FUZZ_FLAGS=-runs=10000000
#
# Both test programs link Debian's LuaJIT (libluajit2-5.1-dev), the
# reference.  SANDBOX_PATTERN_BENCH=1 $(BUILD)/bin/sandbox-pattern-test
# also times ours against it.
#
# The fuzz target is built without -fsanitize-coverage=trace-cmp: one
# input may walk 200000 steps of the matcher, and tracing each comparison
# of the walk makes it five times slower; the dictionary gives libFuzzer
# the pieces of patterns instead.
#

SANDBOX_CC ?= $(CC)

SANDBOX_CFLAGS ?= -O2 -g -Wall -Wextra -Werror -std=c99 -D_GNU_SOURCE
SANDBOX_LUA_CFLAGS ?= -I/usr/include/luajit-2.1
SANDBOX_LUA_LIBS ?= -lluajit-5.1

SANDBOX_FUZZ_CC ?= clang
SANDBOX_FUZZ_CFLAGS ?= -O2 -g -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -fno-sanitize-coverage=trace-cmp \
	-Wall -Wextra -Werror -std=c99 -D_GNU_SOURCE

SANDBOX_DIR := gateway/sandbox
SANDBOX_FUZZ_DIR := gateway/sandbox/fuzz

SANDBOX_PATTERN_DEPS := $(SANDBOX_DIR)/sandbox_pattern.c \
	$(SANDBOX_DIR)/sandbox_pattern.h $(SANDBOX_DIR)/sandbox_budget.h

SANDBOX_UNIT_BINS := $(BUILD)/bin/sandbox-pattern-test \
	$(BUILD)/bin/sandbox-pattern-fuzz-replay


$(BUILD)/obj/sandbox/sandbox_pattern.o: $(SANDBOX_PATTERN_DEPS)
	@mkdir -p $(@D)
	$(SANDBOX_CC) $(SANDBOX_CFLAGS) $(SANDBOX_LUA_CFLAGS) -c -o $@ \
		$(SANDBOX_DIR)/sandbox_pattern.c

$(BUILD)/obj/sandbox/sandbox_budget.o: $(SANDBOX_DIR)/sandbox_budget.c \
		$(SANDBOX_DIR)/sandbox_budget.h
	@mkdir -p $(@D)
	$(SANDBOX_CC) $(SANDBOX_CFLAGS) $(SANDBOX_LUA_CFLAGS) -c -o $@ \
		$(SANDBOX_DIR)/sandbox_budget.c

$(BUILD)/obj/sandbox/sandbox_pattern_test.o: t/unit/sandbox_pattern_test.c \
		$(SANDBOX_DIR)/sandbox_pattern.h $(SANDBOX_DIR)/sandbox_budget.h
	@mkdir -p $(@D)
	$(SANDBOX_CC) $(SANDBOX_CFLAGS) $(SANDBOX_LUA_CFLAGS) -I$(SANDBOX_DIR) \
		-c -o $@ t/unit/sandbox_pattern_test.c

# the fuzz target with LLVMFuzzerTestOneInput() renamed, for the replay
$(BUILD)/obj/sandbox/sandbox_pattern_fuzz.o: \
		$(SANDBOX_FUZZ_DIR)/sandbox_pattern_fuzz.c \
		$(SANDBOX_DIR)/sandbox_pattern.h $(SANDBOX_DIR)/sandbox_budget.h
	@mkdir -p $(@D)
	$(SANDBOX_CC) $(SANDBOX_CFLAGS) $(SANDBOX_LUA_CFLAGS) -I$(SANDBOX_DIR) \
		-DLLVMFuzzerTestOneInput=sandbox_pattern_fuzz_input -c -o $@ \
		$(SANDBOX_FUZZ_DIR)/sandbox_pattern_fuzz.c

# the replay driver is the route name fuzzers' (validators/build.mk)
$(BUILD)/obj/sandbox/replay_targets.o: $(SANDBOX_FUZZ_DIR)/replay_targets.c
	@mkdir -p $(@D)
	$(SANDBOX_CC) $(SANDBOX_CFLAGS) -c -o $@ $(SANDBOX_FUZZ_DIR)/replay_targets.c


$(BUILD)/bin/sandbox-pattern-test: \
		$(BUILD)/obj/sandbox/sandbox_pattern_test.o \
		$(BUILD)/obj/sandbox/sandbox_pattern.o \
		$(BUILD)/obj/sandbox/sandbox_budget.o
	@mkdir -p $(@D)
	$(SANDBOX_CC) $(SANDBOX_CFLAGS) -o $@ $^ $(SANDBOX_LUA_LIBS)

$(BUILD)/bin/sandbox-pattern-fuzz-replay: $(BUILD)/obj/fuzz/replay.o \
		$(BUILD)/obj/sandbox/replay_targets.o \
		$(BUILD)/obj/sandbox/sandbox_pattern_fuzz.o \
		$(BUILD)/obj/sandbox/sandbox_pattern.o \
		$(BUILD)/obj/sandbox/sandbox_budget.o
	@mkdir -p $(@D)
	$(SANDBOX_CC) $(SANDBOX_CFLAGS) -o $@ $^ $(SANDBOX_LUA_LIBS)

# clang and libFuzzer come with the route name fuzzers' packages (fuzz.mk)
$(BUILD)/fuzz/sandbox-pattern-fuzz: \
		$(SANDBOX_FUZZ_DIR)/sandbox_pattern_fuzz.c \
		$(SANDBOX_PATTERN_DEPS) $(SANDBOX_DIR)/sandbox_budget.c \
		| $(BUILD)/.fuzz-deps
	@mkdir -p $(@D)
	$(SANDBOX_FUZZ_CC) $(SANDBOX_FUZZ_CFLAGS) $(SANDBOX_LUA_CFLAGS) \
		-I$(SANDBOX_DIR) -o $@ $(SANDBOX_FUZZ_DIR)/sandbox_pattern_fuzz.c \
		$(SANDBOX_DIR)/sandbox_pattern.c $(SANDBOX_DIR)/sandbox_budget.c \
		$(SANDBOX_LUA_LIBS)


.PHONY: fuzz-pattern
fuzz-pattern: $(BUILD)/fuzz/sandbox-pattern-fuzz
	@mkdir -p $(BUILD)/fuzz/corpus/sandbox-pattern-fuzz
	$(BUILD)/fuzz/sandbox-pattern-fuzz -max_total_time=$(FUZZ_SECONDS) \
	    -max_len=$(FUZZ_MAX_LEN) -print_final_stats=1 \
	    -dict=$(SANDBOX_FUZZ_DIR)/sandbox_pattern.dict \
	    -artifact_prefix=$(BUILD)/fuzz/ $(FUZZ_FLAGS) \
	    $(BUILD)/fuzz/corpus/sandbox-pattern-fuzz $(SANDBOX_FUZZ_DIR)/corpus \
	    $(wildcard $(SANDBOX_FUZZ_DIR)/crashers)


# a compiler and libluajit2-5.1-dev come from the Debian packages
$(BUILD)/obj/sandbox/sandbox_pattern.o $(BUILD)/obj/sandbox/sandbox_budget.o \
$(BUILD)/obj/sandbox/sandbox_pattern_test.o \
$(BUILD)/obj/sandbox/sandbox_pattern_fuzz.o $(BUILD)/obj/sandbox/replay_targets.o: \
		| $(BUILD)/.deps
