# The checked builds of nginx and the test runs against them.  Included
# by the top-level Makefile; not part of "make test" (they take long).
#
#   make test-asan       t/ against an nginx built with AddressSanitizer
#                        and UndefinedBehaviorSanitizer
#   make test-valgrind   t/ with nginx under valgrind's memcheck
#
#   $(BUILD)/asan/               the sanitized nginx (objs/, nginx/)
#   $(BUILD)/asan/reports/       what the sanitizers report, one file per
#                                process (log_path); empty when clean
#   $(BUILD)/valgrind/src/       Debian's luajit2 source package
#   $(BUILD)/valgrind/luajit/    LuaJIT2 built from it for memcheck
#   $(BUILD)/valgrind/           the nginx linked to that LuaJIT
#
# Both builds share Debian's unpacked sources with the main build
# ($(SRC)) and configure nginx into a --builddir of their own, through a
# second make with BUILD= pointing there (gateway/build/nginx.mk).

ASAN_BUILD    := $(BUILD)/asan
ASAN_NGINX    := $(ASAN_BUILD)/nginx/sbin/nginx
ASAN_REPORTS  := $(abspath $(ASAN_BUILD))/reports

ASAN_CC_OPT   := -fsanitize=address,undefined -fno-omit-frame-pointer -O1 -g
ASAN_LD_OPT   := -fsanitize=address,undefined

# Leak checking is valgrind's job here (make test-valgrind), as in
# OpenResty's own test runs: nginx leaves memory to exit() on purpose
# (the master's configuration cycle, "nginx -t", a worker that exits
# with a fatal error), so LeakSanitizer would report at every exit and
# turn "nginx -t" into a failure (its exit status 23).  UBSan goes on
# after a report; the report file is what fails the run.
ASAN_OPTS     := detect_leaks=0:log_path=$(ASAN_REPORTS)/asan
UBSAN_OPTS    := print_stacktrace=1:log_path=$(ASAN_REPORTS)/ubsan

VG_BUILD      := $(BUILD)/valgrind
VG_NGINX      := $(VG_BUILD)/nginx/sbin/nginx
VG_LUAJIT_VERSION := 2.1-20230119
VG_LUAJIT_SRC := $(VG_BUILD)/src/luajit2-$(VG_LUAJIT_VERSION)
VG_LUAJIT     := $(abspath $(VG_BUILD))/luajit
VG_LUAJIT_LIB := $(VG_LUAJIT)/lib/libluajit-5.1.so

# LuaJIT for memcheck, as its own Makefile says: the system allocator
# (its own allocator hands out memory memcheck cannot see, and reads
# whole words past the ends of strings), and the Valgrind client
# requests that discard the translations of machine code it rewrites.
VG_LUAJIT_CFLAGS := -DLUAJIT_USE_SYSMALLOC -DLUAJIT_USE_VALGRIND

# Debian packages for the valgrind run beyond gateway/build/packages
# (the sanitizers' runtimes come with gcc)
VG_DEPS       := $(BUILD)/.deps-valgrind

$(VG_DEPS): gateway/build/packages-valgrind gateway/build/install-deps \
            | $(BUILD)/.deps
	gateway/build/install-deps gateway/build/packages-valgrind
	@mkdir -p $(@D) && touch $@


.PHONY: asan valgrind test-asan test-valgrind

asan: $(SRC)/versions
	$(MAKE) BUILD=$(ASAN_BUILD) SRC=$(SRC) \
	    NGX_EXTRA_CC_OPT='$(ASAN_CC_OPT)' \
	    NGX_EXTRA_LD_OPT='$(ASAN_LD_OPT)' $(ASAN_NGINX)

valgrind: $(SRC)/versions $(VG_LUAJIT_LIB)
	LUAJIT_INC=$(VG_LUAJIT)/include/luajit-2.1 \
	LUAJIT_LIB=$(VG_LUAJIT)/lib \
	$(MAKE) BUILD=$(VG_BUILD) SRC=$(SRC) \
	    NGX_EXTRA_LD_OPT='-Wl,-rpath,$(VG_LUAJIT)/lib' $(VG_NGINX)

$(VG_BUILD)/src/versions: gateway/build/fetch-sources | $(VG_DEPS)
	gateway/build/fetch-sources $(VG_BUILD)/src \
	    luajit2 $(VG_LUAJIT_VERSION)

# Debian's build (debian/rules: "make amalg"), with debug information
# and the flags above; our make's variables stay out of LuaJIT's.
$(VG_LUAJIT_LIB): $(VG_BUILD)/src/versions
	cd $(VG_LUAJIT_SRC) && env -u MAKEFLAGS -u MAKELEVEL sh -c '\
	    make clean >/dev/null && \
	    make amalg PREFIX=$(VG_LUAJIT) CCDEBUG=-g \
	        XCFLAGS="$(VG_LUAJIT_CFLAGS)" Q= E=@: && \
	    make install PREFIX=$(VG_LUAJIT) LDCONFIG=true' \
	    > $(abspath $(VG_BUILD))/luajit.log 2>&1 \
	    || { tail -30 $(VG_BUILD)/luajit.log; exit 1; }


# The run: the whole suite, then whatever the per-process report files
# say (the harness checks them after each test file too).

test-asan: asan
	@rm -rf $(ASAN_REPORTS) && mkdir -p $(ASAN_REPORTS) \
	    && chmod 1777 $(ASAN_REPORTS)
	TEST_NGINX_BINARY=$(abspath $(ASAN_NGINX)) \
	ASAN_OPTIONS="$(ASAN_OPTS)$${ASAN_OPTIONS:+:$$ASAN_OPTIONS}" \
	UBSAN_OPTIONS="$(UBSAN_OPTS)$${UBSAN_OPTIONS:+:$$UBSAN_OPTIONS}" \
	    prove -r t/; rc=$$?; \
	gateway/build/check-reports $(ASAN_REPORTS) && exit $$rc

test-valgrind: valgrind
	TEST_NGINX_BINARY=$(abspath $(VG_NGINX)) TEST_NGINX_USE_VALGRIND=1 \
	    prove -r t/
