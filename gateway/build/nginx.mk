# The nginx build: Debian's source packages, Debian's patch series, our
# patch series, then nginx with lua-nginx-module, ngx_devel_kit and the
# route guard.  Included by the top-level Makefile.
#
#   $(BUILD)/src/            Debian's unpacked source packages
#   $(BUILD)/src/nginx/      nginx 1.22.1 with Debian's and our patches
#   $(BUILD)/objs/           nginx's objects (configure --builddir)
#   $(BUILD)/nginx/sbin/     the nginx binary
#
# nginx's own objs/Makefile knows which objects depend on which sources,
# so after configure a change in validators/ recompiles only that module.

NGINX_VERSION  := 1.22.1
LUA_VERSION    := 0.10.23
NDK_VERSION    := 0.3.2

SRC            := $(BUILD)/src
NGINX_SRC      := $(SRC)/nginx
LUA_SRC        := $(SRC)/libnginx-mod-http-lua-$(LUA_VERSION)
NDK_SRC        := $(SRC)/libnginx-mod-http-ndk-$(NDK_VERSION)
NGINX_OBJS     := $(BUILD)/objs
NGINX_PREFIX   := $(BUILD)/nginx
NGINX          := $(NGINX_PREFIX)/sbin/nginx

PATCHES        := $(shell sed -e 's/\#.*//' gateway/patches/series)
PATCH_FILES    := gateway/patches/series $(addprefix gateway/patches/,$(PATCHES))

GUARD_SRCS     := $(wildcard validators/ngx_http_route_guard*.c) \
                  $(wildcard validators/route_name*.c) \
                  $(wildcard validators/*.h) \
                  validators/config

# the sandbox's C side (gateway/sandbox/config), after lua-nginx-module
SANDBOX_SRCS   := $(wildcard gateway/sandbox/*.c gateway/sandbox/*.h) \
                  gateway/sandbox/config

# the watchdog (gateway/watchdog/config), after the route guard
WATCHDOG_SRCS  := $(wildcard gateway/watchdog/*.c) gateway/watchdog/config

$(BUILD)/.deps: gateway/build/packages gateway/build/install-deps
	gateway/build/install-deps
	@mkdir -p $(@D) && touch $@

$(SRC)/versions: gateway/build/fetch-sources | $(BUILD)/.deps
	gateway/build/fetch-sources $(SRC)

# A fresh copy of Debian's patched tree, then our series on top, so that
# editing a patch never stacks it twice.
$(NGINX_SRC)/.patched: $(SRC)/versions $(PATCH_FILES)
	rm -rf $(NGINX_SRC)
	cp -a $(SRC)/nginx-$(NGINX_VERSION) $(NGINX_SRC)
	for p in $(PATCHES); do \
	    echo "applying gateway/patches/$$p"; \
	    patch -d $(NGINX_SRC) -p1 --forward --batch \
	        < gateway/patches/$$p || exit 1; \
	done
	touch $@

# the route metrics (gateway/metrics/config), after the route guard
METRICS_SRCS   := $(wildcard gateway/metrics/*.c gateway/metrics/*.h) \
                  gateway/metrics/config

$(NGINX_OBJS)/Makefile: $(NGINX_SRC)/.patched validators/config \
                        gateway/sandbox/config gateway/metrics/config \
                        gateway/watchdog/config \
                        gateway/build/configure-nginx
	gateway/build/configure-nginx $(abspath $(NGINX_SRC)) \
	    $(abspath $(NGINX_OBJS)) $(abspath $(NGINX_PREFIX)) \
	    $(abspath $(LUA_SRC)) $(abspath $(NDK_SRC)) $(abspath validators) \
	    $(abspath gateway/sandbox) $(abspath gateway/metrics) \
	    $(abspath gateway/watchdog) \
	    > $(BUILD)/configure.log 2>&1 \
	    || { tail -30 $(BUILD)/configure.log; exit 1; }

# The guard's objects, and the headers they include, which nginx's
# Makefile does not know about (see validators/config).
GUARD_OBJS     := $(patsubst validators/%.c,$(NGINX_OBJS)/addon/validators/%.o,\
                    $(filter %.c,$(GUARD_SRCS)))
GUARD_HDRS     := $(wildcard validators/*.h)
SANDBOX_OBJS   := $(patsubst gateway/sandbox/%.c,$(NGINX_OBJS)/addon/sandbox/%.o,\
                    $(filter %.c,$(SANDBOX_SRCS)))
SANDBOX_HDRS   := $(wildcard gateway/sandbox/*.h)
# the metrics and the watchdog include the guard's header
METRICS_OBJS   := $(patsubst gateway/metrics/%.c,$(NGINX_OBJS)/addon/metrics/%.o,\
                    $(filter %.c,$(METRICS_SRCS)))
METRICS_HDRS   := $(wildcard gateway/metrics/*.h) $(GUARD_HDRS)
WATCHDOG_OBJS  := $(patsubst gateway/watchdog/%.c,$(NGINX_OBJS)/addon/watchdog/%.o,\
                    $(filter %.c,$(WATCHDOG_SRCS)))

# $(call remove-stale,OBJECTS,HEADERS): the objects older than a header
remove-stale = for o in $(1); do \
                   for h in $(2); do [ $$h -nt $$o ] && rm -f $$o; done; \
               done;

$(NGINX_OBJS)/nginx: $(NGINX_OBJS)/Makefile $(GUARD_SRCS) $(SANDBOX_SRCS) \
                     $(METRICS_SRCS) $(WATCHDOG_SRCS)
	$(call remove-stale,$(GUARD_OBJS) $(WATCHDOG_OBJS),$(GUARD_HDRS)) \
	$(call remove-stale,$(SANDBOX_OBJS),$(SANDBOX_HDRS)) \
	$(call remove-stale,$(METRICS_OBJS),$(METRICS_HDRS)) true
	$(MAKE) -C $(NGINX_SRC) -f $(abspath $(NGINX_OBJS))/Makefile binary

# a running nginx keeps its binary busy: install by rename, never in place
$(NGINX): $(NGINX_OBJS)/nginx
	@mkdir -p $(@D) $(NGINX_PREFIX)/logs
	cp $< $@.new
	mv -f $@.new $@


# The same module, dynamic, for Debian's packaged nginx (nginx-dev).

DYNAMIC        := $(BUILD)/dynamic
DYNAMIC_MODULE := $(DYNAMIC)/ngx_http_route_guard_module.so

# Debian's own modules, loaded beside ours
DEBIAN_MODULES := /usr/lib/nginx/modules/ndk_http_module.so \
                  /usr/lib/nginx/modules/ngx_http_lua_module.so

$(DYNAMIC)/objs/Makefile: validators/config \
                          gateway/build/build-dynamic-module | $(BUILD)/.deps
	gateway/build/build-dynamic-module $(DYNAMIC) $(abspath validators)

$(DYNAMIC_MODULE): $(DYNAMIC)/objs/Makefile $(GUARD_SRCS)
	$(MAKE) -C $(DYNAMIC)/nginx -f $(abspath $(DYNAMIC))/objs/Makefile \
	    modules
	cp $(DYNAMIC)/objs/ngx_http_route_guard_module.so $@
