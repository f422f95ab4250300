#
# The route name grammar core and the programs around it.
#
# Included by the top-level Makefile, which runs from the top of the tree
# and sets BUILD.  Objects go to $(BUILD)/obj/, programs to $(BUILD)/bin/:
#
#   $(BUILD)/bin/route-check         the command line checker and linter
#   $(BUILD)/bin/route-name-test     unit tests of the core, TAP output
#   $(BUILD)/bin/route-name-bench    the core against PCRE2-JIT
#   $(BUILD)/bin/route-name-fuzz-replay
#                                    the fuzz targets over their seed
#                                    corpus and crashers, no libFuzzer
#
# The benchmark has objects of its own, built with ROUTE_BENCH_CFLAGS, so
# that e.g. ROUTE_CFLAGS="-O0 -g -fsanitize=address,undefined" builds the
# checker and the tests for debugging and leaves the figures alone.
#

ROUTE_CC ?= $(CC)

ROUTE_CFLAGS ?= -O2 -g -Wall -Wextra -Werror -std=c99 -D_GNU_SOURCE
ROUTE_LDFLAGS ?=

ROUTE_BENCH_CFLAGS ?= -O2 -g -Wall -Wextra -Werror -std=c99 -D_GNU_SOURCE
ROUTE_BENCH_LIBS ?= -lpcre2-8

# the core: the grammar and its walk, and the SSE2 fast path beside it
ROUTE_CORE_SRCS := validators/route_name.c validators/route_name_sse2.c
ROUTE_CORE_HDRS := validators/route_name.h validators/route_name_sse2.h
ROUTE_CORE_DEPS := $(ROUTE_CORE_SRCS) $(ROUTE_CORE_HDRS)
ROUTE_CORE_OBJS := $(patsubst validators/%.c,$(BUILD)/obj/%.o,\
                     $(ROUTE_CORE_SRCS))
ROUTE_BENCH_CORE_OBJS := $(patsubst validators/%.c,$(BUILD)/obj/bench/%.o,\
                           $(ROUTE_CORE_SRCS))

ROUTE_BINS := \
	$(BUILD)/bin/route-check \
	$(BUILD)/bin/route-name-test \
	$(BUILD)/bin/route-name-bench \
	$(BUILD)/bin/route-name-fuzz-replay


$(ROUTE_CORE_OBJS): $(BUILD)/obj/%.o: validators/%.c $(ROUTE_CORE_HDRS)
	@mkdir -p $(@D)
	$(ROUTE_CC) $(ROUTE_CFLAGS) -c -o $@ $<

$(BUILD)/obj/route_check.o: validators/route_check.c validators/route_name.h
	@mkdir -p $(@D)
	$(ROUTE_CC) $(ROUTE_CFLAGS) -c -o $@ validators/route_check.c

$(BUILD)/obj/route_name_test.o: t/unit/route_name_test.c \
		validators/route_name.h
	@mkdir -p $(@D)
	$(ROUTE_CC) $(ROUTE_CFLAGS) -Ivalidators -c -o $@ \
		t/unit/route_name_test.c

# the fuzz targets, each with LLVMFuzzerTestOneInput() renamed

$(BUILD)/obj/fuzz/route_name_fuzz.o: validators/fuzz/route_name_fuzz.c \
		validators/fuzz/route_name_fuzz.h validators/route_name.h
	@mkdir -p $(@D)
	$(ROUTE_CC) $(ROUTE_CFLAGS) -Ivalidators \
		-DLLVMFuzzerTestOneInput=route_name_fuzz_input -c -o $@ \
		validators/fuzz/route_name_fuzz.c

$(BUILD)/obj/fuzz/route_name_pcre_fuzz.o: \
		validators/fuzz/route_name_pcre_fuzz.c \
		validators/fuzz/route_name_fuzz.h validators/route_name.h
	@mkdir -p $(@D)
	$(ROUTE_CC) $(ROUTE_CFLAGS) -Ivalidators \
		-DLLVMFuzzerTestOneInput=route_name_pcre_fuzz_input -c -o $@ \
		validators/fuzz/route_name_pcre_fuzz.c

$(BUILD)/obj/fuzz/replay.o: validators/fuzz/replay.c
	@mkdir -p $(@D)
	$(ROUTE_CC) $(ROUTE_CFLAGS) -c -o $@ validators/fuzz/replay.c

$(BUILD)/obj/fuzz/replay_targets.o: validators/fuzz/replay_targets.c
	@mkdir -p $(@D)
	$(ROUTE_CC) $(ROUTE_CFLAGS) -c -o $@ validators/fuzz/replay_targets.c

$(ROUTE_BENCH_CORE_OBJS): $(BUILD)/obj/bench/%.o: validators/%.c \
		$(ROUTE_CORE_HDRS)
	@mkdir -p $(@D)
	$(ROUTE_CC) $(ROUTE_BENCH_CFLAGS) -c -o $@ $<

$(BUILD)/obj/bench/route_name_bench.o: bench/route_name_bench.c \
		validators/route_name.h
	@mkdir -p $(@D)
	$(ROUTE_CC) $(ROUTE_BENCH_CFLAGS) -Ivalidators -c -o $@ \
		bench/route_name_bench.c


$(BUILD)/bin/route-check: $(BUILD)/obj/route_check.o $(ROUTE_CORE_OBJS)
	@mkdir -p $(@D)
	$(ROUTE_CC) $(ROUTE_CFLAGS) $(ROUTE_LDFLAGS) -o $@ $^

$(BUILD)/bin/route-name-test: $(BUILD)/obj/route_name_test.o \
		$(ROUTE_CORE_OBJS)
	@mkdir -p $(@D)
	$(ROUTE_CC) $(ROUTE_CFLAGS) $(ROUTE_LDFLAGS) -o $@ $^

$(BUILD)/bin/route-name-bench: $(BUILD)/obj/bench/route_name_bench.o \
		$(ROUTE_BENCH_CORE_OBJS)
	@mkdir -p $(@D)
	$(ROUTE_CC) $(ROUTE_BENCH_CFLAGS) $(ROUTE_LDFLAGS) -o $@ $^ \
		$(ROUTE_BENCH_LIBS)

$(BUILD)/bin/route-name-fuzz-replay: $(BUILD)/obj/fuzz/replay.o \
		$(BUILD)/obj/fuzz/replay_targets.o \
		$(BUILD)/obj/fuzz/route_name_fuzz.o \
		$(BUILD)/obj/fuzz/route_name_pcre_fuzz.o $(ROUTE_CORE_OBJS)
	@mkdir -p $(@D)
	$(ROUTE_CC) $(ROUTE_CFLAGS) $(ROUTE_LDFLAGS) -o $@ $^ -lpcre2-8


# a compiler and libpcre2-dev come from the Debian packages
$(ROUTE_CORE_OBJS) $(ROUTE_BENCH_CORE_OBJS) $(BUILD)/obj/route_check.o \
$(BUILD)/obj/route_name_test.o $(BUILD)/obj/bench/route_name_bench.o \
$(BUILD)/obj/fuzz/route_name_fuzz.o $(BUILD)/obj/fuzz/route_name_pcre_fuzz.o \
$(BUILD)/obj/fuzz/replay.o: | $(BUILD)/.deps
