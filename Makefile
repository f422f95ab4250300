# The gateway: nginx + lua-nginx-module + the route guard.
#
#   make              build nginx and the tools under build/
#   make run          build, then serve routes/ on 127.0.0.1:$(PORT)
#   make start/stop   the same in the background
#   make upgrade      rebuild and swap the running binary, no request lost
#   make publish      check DIR= and publish it to the fleet FLEET= in ETCD=
#   make fleet        what the fleet's nodes report
#   make fleet-demo   three nodes fed from a 3-member etcd cluster
#   make deb          the Debian package, build/deb/gateway_<version>_<arch>.deb
#   make test         build, then run every test
#   make test-deb     install the package here, run its service, upgrade it
#                     under load, purge it (in make test)
#   make test-asan    the nginx tests against nginx built with ASan/UBSan
#   make test-valgrind  the nginx tests with nginx under valgrind
#   make bench        benchmarks (see bench/)
#   make soak         a minute of mixed load with faults injected
#   make fuzz         the route name fuzzers, FUZZ_SECONDS each
#   make fuzz-pattern the sandbox's pattern functions against LuaJIT's
#
# README.md says more.  Everything built lands under build/.

BUILD   := build
PORT        ?= 8080
STATUS_PORT ?= 8081
ROUTES      ?= routes
MODULES     ?= modules
SANDBOX_ROUTES ?= sandbox
CONF        ?= conf
WORKERS     ?= auto
# the node's nginx prefix: several nodes run from one checkout
RUN         ?= $(BUILD)/run

# a node of a fleet fed from etcd (README.md, "Fleet"); no ETCD: local files
ETCD        ?=
FLEET       ?=
NODE        ?=
ETCD_USER   ?=
ETCD_PASSWORD_FILE ?=
ETCD_CA     ?=
ETCD_CERT   ?=
ETCD_KEY    ?=

# LIB= named MODULES= before modules/ was lib/: accepted for a while
ifeq ($(origin LIB),command line)
ifneq ($(origin MODULES),command line)
MODULES := $(LIB)
$(warning LIB= is deprecated, use MODULES=$(LIB))
endif
endif

.PHONY: all
all: $(BUILD)/nginx/sbin/nginx $(BUILD)/bin/route-check

include gateway/build/nginx.mk
include validators/build.mk
include validators/fuzz/fuzz.mk
include gateway/sandbox/build.mk

# `make fuzz` runs every fuzz target
fuzz: fuzz-pattern
include gateway/build/check.mk


# running

GATEWAYCTL := NGINX_BIN=$(NGINX) PREFIX=$(RUN) PORT=$(PORT) \
              STATUS_PORT=$(STATUS_PORT) ROUTES=$(ROUTES) \
              MODULES=$(MODULES) SANDBOX_ROUTES=$(SANDBOX_ROUTES) \
              WORKERS=$(WORKERS) CONF=$(CONF) \
              ETCD='$(ETCD)' FLEET='$(FLEET)' NODE='$(NODE)' \
              ETCD_USER='$(ETCD_USER)' \
              ETCD_PASSWORD_FILE='$(ETCD_PASSWORD_FILE)' \
              ETCD_CA='$(ETCD_CA)' ETCD_CERT='$(ETCD_CERT)' \
              ETCD_KEY='$(ETCD_KEY)' \
              ROUTE_CHECK=$(BUILD)/bin/route-check \
              gateway/bin/gatewayctl

.PHONY: run start stop upgrade publish fleet fleet-demo fleet-demo-stop
run: all
	$(GATEWAYCTL) run

start: all
	$(GATEWAYCTL) start

stop:
	$(GATEWAYCTL) stop

# rebuild, then swap the running binary without dropping a request
upgrade: all
	gateway/bin/upgrade $(RUN) $(PORT)

# the fleet: DIR= holds routes/, modules/, sandbox/ (each optional)
publish: $(BUILD)/.deps $(BUILD)/bin/route-check
	@[ -n "$(DIR)" ] || { echo "make publish DIR=<dir> ETCD=... FLEET=..." >&2; exit 2; }
	$(GATEWAYCTL) publish '$(DIR)'

fleet: $(BUILD)/.deps
	$(GATEWAYCTL) fleet

# a 3-member etcd cluster and three nodes under build/fleet-demo/, the
# checkout's routes published to them (FLEET_DEMO_PORT: the first port)
FLEET_DEMO_PORT ?= 9100
fleet-demo: all
	NGINX_BIN=$(NGINX) gateway/bin/fleet-demo start $(BUILD)/fleet-demo \
	    $(FLEET_DEMO_PORT)

fleet-demo-stop:
	gateway/bin/fleet-demo stop $(BUILD)/fleet-demo


# tests

.PHONY: test test-unit test-routes test-nginx test-dynamic test-deb
test: test-unit test-routes test-nginx test-dynamic test-deb

# the grammar core, the sandbox's pattern functions against LuaJIT's,
# then the fuzzers' corpus and crashers without libFuzzer
test-unit: $(BUILD)/.deps $(BUILD)/bin/route-name-test \
		$(BUILD)/bin/route-name-fuzz-replay $(SANDBOX_UNIT_BINS)
	prove --exec '' $(BUILD)/bin/route-name-test \
	    $(BUILD)/bin/route-name-fuzz-replay $(SANDBOX_UNIT_BINS)

# the shipped routes: names and files (route-check), then Lua (luacheck)
test-routes: $(BUILD)/.deps $(BUILD)/bin/route-check
	$(BUILD)/bin/route-check --tree routes/
	$(BUILD)/bin/route-check --tree sandbox/
	luacheck --no-color routes/ modules/ gateway/lib/

test-nginx: all
	prove -r t/

# The validator tests again, against Debian's /usr/sbin/nginx with the
# dynamic module and Debian's lua-nginx-module.
test-dynamic: $(DYNAMIC_MODULE)
	TEST_NGINX_BINARY=/usr/sbin/nginx \
	TEST_NGINX_LOAD_MODULES="$(DEBIAN_MODULES) $(abspath $(DYNAMIC_MODULE))" \
	    prove t/0[1-5]*.t


# The package installed on this machine, its service run by the unit's
# own command lines, upgraded under wrk, purged (t/deb/package.t; it
# skips in `prove -r t/`)
test-deb: all $(BUILD)/.deps-deb
	TEST_GATEWAY_DEB=1 prove t/deb/


# the Debian package, from this build (README.md, "Install")

DEB_DIR     := $(BUILD)/deb
DEB_VERSION ?= $(shell dpkg-parsechangelog -l gateway/deb/changelog -S Version)

.PHONY: deb
deb: all $(BUILD)/.deps-deb
	gateway/build/make-deb $(NGINX) $(DEB_VERSION) $(DEB_DIR)
	lintian --fail-on error,warning \
	    $(DEB_DIR)/gateway_$(DEB_VERSION)_$(shell dpkg-architecture -qDEB_HOST_ARCH).deb

# lintian, logrotate, systemd-analyze
$(BUILD)/.deps-deb: gateway/build/packages-deb gateway/build/install-deps \
		| $(BUILD)/.deps
	gateway/build/install-deps gateway/build/packages-deb
	@touch $@


# the dynamic module, loaded into Debian's nginx

.PHONY: dynamic dynamic-demo
dynamic: $(DYNAMIC_MODULE)

dynamic-demo: $(DYNAMIC_MODULE)
	gateway/bin/dynamic-demo /usr/sbin/nginx $(BUILD)/dynamic/demo \
	    "$(DEBIAN_MODULES) $(abspath $(DYNAMIC_MODULE))"


# benchmarks

.PHONY: bench bench-name bench-guard bench-fresh bench-memory bench-reload \
        bench-sandbox bench-watchdog bench-fleet bench-instructions
bench: bench-name bench-guard bench-fresh bench-memory bench-reload \
       bench-sandbox bench-watchdog

bench-name: $(BUILD)/bin/route-name-bench
	$(BUILD)/bin/route-name-bench

bench-guard: all
	bench/guard-vs-unguarded

bench-fresh: all
	bench/fresh-vs-stale

bench-memory: all
	bench/edit-memory

bench-reload: all
	bench/reload-under-load

bench-sandbox: all
	bench/sandbox-overhead

bench-watchdog: all
	bench/watchdog-cost

# instructions per request under callgrind (builds valgrind first, once)
bench-instructions: all $(VALGRIND)
	bench/request-instructions

# a 3-member etcd cluster and 10 nodes (a few minutes; not in `make bench`)
bench-fleet: all
	bench/fleet-convergence


# load and faults: not part of `make test` (a minute, and wrk)
.PHONY: soak
soak: all
	bench/soak


.PHONY: clean
clean:
	rm -rf $(BUILD) t/servroot*
