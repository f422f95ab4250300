# The checked builds of nginx and the test runs against them.  Included
# by the top-level Makefile; not part of "make test" (they take long).
#
#   make test-asan       t/ against an nginx built with AddressSanitizer
#                        and UndefinedBehaviorSanitizer
#   make test-valgrind   t/ with nginx under valgrind's memcheck
#
#   $(BUILD)/asan/               the sanitized nginx (objs/, nginx/)
#   $(BUILD)/valgrind/src/       Debian's luajit2 source package
#   $(BUILD)/valgrind/luajit/    LuaJIT2 built from it for memcheck,
#                                installed there as if in /usr
#   $(BUILD)/valgrind/src-trixie/  Debian 13's valgrind source package
#   $(BUILD)/valgrind/tool/      valgrind built from it
#   $(BUILD)/valgrind/           the nginx linked to that LuaJIT
#
# Both builds share Debian's unpacked sources with the main build
# ($(SRC)) and configure nginx into a --builddir of their own, through a
# second make with BUILD= pointing there (gateway/build/nginx.mk).

ASAN_BUILD    := $(BUILD)/asan
ASAN_NGINX    := $(ASAN_BUILD)/nginx/sbin/nginx

ASAN_CC_OPT   := -fsanitize=address,undefined -fno-omit-frame-pointer -O1 -g
ASAN_LD_OPT   := -fsanitize=address,undefined

# Leak checking is valgrind's job here (make test-valgrind), as in
# OpenResty's own test runs: nginx leaves memory to exit() on purpose
# (the configuration cycle of "nginx -t", a process that exits on a
# fatal error), so LeakSanitizer would report at every such exit and
# turn "nginx -t" into a failure (its exit status 23).
#
# Reports go to stderr, which is the error log in a running nginx and
# the output of "nginx -t" (the agent logs it when the test fails; with
# gcc's runtimes UBSan has no log_path of its own).  UBSan stops at its
# first report like ASan, so that a report in the agent's "nginx -t"
# fails the test and is logged.  t/TestChecked.pm finds the reports;
# t/ubsan.supp says which ones are not ours.
ASAN_OPTS     := detect_leaks=0
UBSAN_SUPP    := $(abspath t/ubsan.supp)
UBSAN_OPTS    := print_stacktrace=1:halt_on_error=1:suppressions=$(UBSAN_SUPP)

VG_BUILD      := $(BUILD)/valgrind
VG_NGINX      := $(VG_BUILD)/nginx/sbin/nginx

# valgrind: Debian 12's (3.19) does not know openat2(), which the route
# guard opens every script with (RESOLVE_BENEATH): the call fails with
# ENOSYS under it and nginx refuses to start.  Debian 13's source package
# (3.24) does; it builds here with the usual compiler, 64-bit only.
VG_VERSION    := 3.24.0
VG_TOOL_SRC   := $(VG_BUILD)/src-trixie/valgrind-$(VG_VERSION)
VG_TOOL       := $(abspath $(VG_BUILD))/tool
VALGRIND      := $(VG_TOOL)/bin/valgrind

VG_LUAJIT_VERSION := 2.1-20230119
VG_LUAJIT_SRC := $(VG_BUILD)/src/luajit2-$(VG_LUAJIT_VERSION)
VG_LUAJIT     := $(abspath $(VG_BUILD))/luajit
VG_MULTIARCH  := $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null \
                   || echo $$(uname -m)-linux-gnu)
VG_LUAJIT_INC := $(VG_LUAJIT)/usr/include/luajit-2.1
VG_LUAJIT_DIR := $(VG_LUAJIT)/usr/lib/$(VG_MULTIARCH)
VG_LUAJIT_LIB := $(VG_LUAJIT_DIR)/libluajit-5.1.so

# LuaJIT for memcheck, as its own Makefile says: the system allocator
# (its own allocator hands out memory memcheck cannot see, and reads
# whole words past the ends of strings), and the Valgrind client
# requests that discard the translations of machine code it rewrites
# (valgrind.h from the valgrind above).
VG_LUAJIT_CFLAGS := -DLUAJIT_USE_SYSMALLOC -DLUAJIT_USE_VALGRIND \
                    -I$(VG_TOOL)/include

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

valgrind: $(SRC)/versions $(VG_LUAJIT_LIB) $(VALGRIND)
	LUAJIT_INC=$(VG_LUAJIT_INC) LUAJIT_LIB=$(VG_LUAJIT_DIR) \
	$(MAKE) BUILD=$(VG_BUILD) SRC=$(SRC) \
	    NGX_EXTRA_LD_OPT='-Wl,-rpath,$(VG_LUAJIT_DIR)' $(VG_NGINX)

$(VG_BUILD)/src/versions: gateway/build/fetch-sources | $(VG_DEPS)
	gateway/build/fetch-sources $(VG_BUILD)/src \
	    luajit2 $(VG_LUAJIT_VERSION)

# Debian's build (debian/rules: "make amalg" with PREFIX=/usr, so that
# Lua modules are found where Debian's packages put them), with debug
# information and the flags above, installed under $(VG_LUAJIT); our
# make's variables stay out of LuaJIT's.
$(VG_LUAJIT_LIB): $(VG_BUILD)/src/versions $(VALGRIND)
	cd $(VG_LUAJIT_SRC) && env -u MAKEFLAGS -u MAKELEVEL sh -c '\
	    make clean >/dev/null && \
	    make amalg PREFIX=/usr MULTILIB=lib/$(VG_MULTIARCH) CCDEBUG=-g \
	        XCFLAGS="$(VG_LUAJIT_CFLAGS)" Q= E=@: && \
	    rm -rf $(VG_LUAJIT) && \
	    make install PREFIX=/usr MULTILIB=lib/$(VG_MULTIARCH) \
	        DESTDIR=$(VG_LUAJIT) LDCONFIG=true' \
	    > $(abspath $(VG_BUILD))/luajit.log 2>&1 \
	    || { tail -30 $(VG_BUILD)/luajit.log; exit 1; }


$(VG_BUILD)/src-trixie/versions: gateway/build/fetch-sources | $(VG_DEPS)
	DEBIAN_SUITES=trixie gateway/build/fetch-sources \
	    $(VG_BUILD)/src-trixie valgrind $(VG_VERSION)

$(VALGRIND): $(VG_BUILD)/src-trixie/versions
	cd $(VG_TOOL_SRC) && env -u MAKEFLAGS -u MAKELEVEL sh -c '\
	    ./configure --prefix=$(VG_TOOL) --enable-only64bit && \
	    make -j2 && make install' \
	    > $(abspath $(VG_BUILD))/valgrind.log 2>&1 \
	    || { tail -30 $(VG_BUILD)/valgrind.log; exit 1; }


# The runs: the whole suite; each test file ends with a check that its
# nginx processes reported nothing (t/TestChecked.pm).  Options given in
# the environment come after ours, so they win.

test-asan: asan
	TEST_NGINX_BINARY=$(abspath $(ASAN_NGINX)) \
	ASAN_OPTIONS="$(ASAN_OPTS)$${ASAN_OPTIONS:+:$$ASAN_OPTIONS}" \
	UBSAN_OPTIONS="$(UBSAN_OPTS)$${UBSAN_OPTIONS:+:$$UBSAN_OPTIONS}" \
	    prove -r t/

test-valgrind: valgrind
	TEST_NGINX_BINARY=$(abspath $(VG_NGINX)) TEST_NGINX_USE_VALGRIND=1 \
	TEST_NGINX_VALGRIND=$(VALGRIND) \
	    prove -r t/
