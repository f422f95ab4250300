# The gateway: nginx + lua-nginx-module + the route guard.
#
#   make            build nginx and the tools under build/
#   make run        build, then serve the routes on 127.0.0.1:$(PORT)
#   make test       build, then run every test
#
# See README.md for the rest.

BUILD  := build

.PHONY: all
all: $(BUILD)/nginx/sbin/nginx $(BUILD)/bin/route-check

include gateway/build/nginx.mk
include validators/build.mk

.PHONY: clean
clean:
	rm -rf $(BUILD) t/servroot*
