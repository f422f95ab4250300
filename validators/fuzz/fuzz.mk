#
# The route name fuzzers: libFuzzer, clang, AddressSanitizer and
# UndefinedBehaviorSanitizer.  Included by the top-level Makefile; not
# part of "make test", which runs the corpus and the crashers through
# $(BUILD)/bin/route-name-fuzz-replay instead (validators/build.mk).
#
#   make fuzz                   both targets, FUZZ_SECONDS each
#   make fuzz FUZZ_SECONDS=600
#   make fuzz FUZZ_FLAGS=-runs=10000000
#
#   $(BUILD)/fuzz/route-name-fuzz        the core against a reference
#   $(BUILD)/fuzz/route-name-pcre-fuzz   the core against PCRE2-JIT
#   $(BUILD)/fuzz/corpus/<target>/       what the runs found, kept
#   $(BUILD)/fuzz/crash-*                inputs that failed: copy them to
#                                        validators/fuzz/crashers/
#

FUZZ_CC ?= clang
FUZZ_CFLAGS ?= -O1 -g -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -Wall -Wextra -Werror -std=c99 \
	-D_GNU_SOURCE
FUZZ_SECONDS ?= 60
FUZZ_MAX_LEN ?= 600
FUZZ_FLAGS ?=

FUZZ_DIR := validators/fuzz
FUZZ_TARGETS := route-name-fuzz route-name-pcre-fuzz


.PHONY: fuzz
fuzz: $(addprefix $(BUILD)/fuzz/,$(FUZZ_TARGETS))
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(BUILD)/fuzz/corpus/$$t || exit 1; \
	    echo "fuzz: $$t, $(FUZZ_SECONDS) s"; \
	    $(BUILD)/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) \
	        -max_len=$(FUZZ_MAX_LEN) -print_final_stats=1 \
	        -artifact_prefix=$(BUILD)/fuzz/ $(FUZZ_FLAGS) \
	        $(BUILD)/fuzz/corpus/$$t $(FUZZ_DIR)/corpus \
	        $(FUZZ_DIR)/crashers || exit 1; \
	done

# clang and libFuzzer, installed here rather than in gateway/build/packages
$(BUILD)/.fuzz-deps: $(FUZZ_DIR)/packages gateway/build/install-deps
	gateway/build/install-deps $(FUZZ_DIR)/packages
	@mkdir -p $(@D) && touch $@

$(BUILD)/fuzz/route-name-fuzz: $(FUZZ_DIR)/route_name_fuzz.c \
		$(FUZZ_DIR)/route_name_fuzz.h $(ROUTE_CORE_DEPS) \
		| $(BUILD)/.fuzz-deps
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Ivalidators -o $@ \
		$(FUZZ_DIR)/route_name_fuzz.c $(ROUTE_CORE_SRCS)

$(BUILD)/fuzz/route-name-pcre-fuzz: $(FUZZ_DIR)/route_name_pcre_fuzz.c \
		$(FUZZ_DIR)/route_name_fuzz.h $(ROUTE_CORE_DEPS) \
		| $(BUILD)/.fuzz-deps $(BUILD)/.deps
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Ivalidators -o $@ \
		$(FUZZ_DIR)/route_name_pcre_fuzz.c $(ROUTE_CORE_SRCS) \
		-lpcre2-8
