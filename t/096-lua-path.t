# LUA_PATH in nginx's environment (env LUA_PATH;) replaces LuaJIT's
# default package.path.  Debian builds lua-nginx-module with
# LUA_DEFAULT_PATH, which puts /usr/share/lua/5.1/?.lua (lua-resty-core,
# lua-resty-lrucache) before it; our build passes it too
# (gateway/build/configure-nginx), so nginx starts with a LUA_PATH that
# names only the user's own directory, and resty.core loads.
#
# Every block of this file runs with LUA_PATH set to html/lib/?.lua (no
# ";;"), as lua-nginx-module's t/123-lua-path.t runs its blocks.

use FindBin;
use lib $FindBin::Bin;
use TestGateway;

$ENV{LUA_PATH} = html_dir() . '/lib/?.lua';

# GET /t: whether resty.core loaded, and the path
my $config = <<'_EOC_';
    location = /t {
        content_by_lua_block {
            ngx.say("resty.core: ", package.loaded["resty.core"] ~= nil)
            ngx.say("user module: ", require("user_module").answer)
            ngx.say(package.path)
        }
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(config => $config) unless exists $block->{config};
    $block->set_value(main_config => "    env LUA_PATH;\n")
        unless exists $block->{main_config};
    $block->set_value(user_files => <<'_EOF_') unless exists $block->{user_files};
>>> lib/user_module.lua
return { answer = "from LUA_PATH" }
_EOF_
});

run_tests();

__DATA__

=== TEST 1: LUA_PATH set, lua_package_path with ";;": nginx starts, resty.core and the user's modules load
--- request
GET /t
--- response_body_like eval
qr{^resty\.core: true
user module: from LUA_PATH
\Q$ENV{TEST_NGINX_ROOT}\E/gateway/lib/\?\.lua;/usr/share/lua/5\.1/\?\.lua;+\Q$ENV{TEST_NGINX_HTML_DIR}\E/lib/\?\.lua;*
$}



=== TEST 2: the same with lua_code_cache off: every request's new VM gets the same path
--- http_config
    lua_code_cache off;
    lua_package_path "$TEST_NGINX_ROOT/gateway/lib/?.lua;;";
--- allow_alert
--- request eval
["GET /t", "GET /t"]
--- response_body_like eval
[qr{^resty\.core: true
user module: from LUA_PATH
\Q$ENV{TEST_NGINX_ROOT}\E/gateway/lib/\?\.lua;/usr/share/lua/5\.1/\?\.lua;+\Q$ENV{TEST_NGINX_HTML_DIR}\E/lib/\?\.lua;*
$}, qr{^resty\.core: true
user module: from LUA_PATH
}]



=== TEST 3: without lua_package_path: LUA_PATH after Debian's directory
--- http_config
    # lua_package_path: none (a section that names the directive keeps
    # the harness from adding its own)
--- request
GET /t
--- response_body_like eval
qr{^resty\.core: true
user module: from LUA_PATH
/usr/share/lua/5\.1/\?\.lua;+\Q$ENV{TEST_NGINX_HTML_DIR}\E/lib/\?\.lua;*
$}



=== TEST 4: the gateway's runtime starts with LUA_PATH set and serves a route
--- http_config
    lua_shared_dict  gateway_status   1m;
    lua_shared_dict  gateway_metrics  1m;
    lua_shared_dict  gateway_scripts  1m;
    init_by_lua_block {
        require("gateway.router").init{ modules = "$TEST_NGINX_HTML_DIR/modules" }
    }
    init_worker_by_lua_block {
        require("gateway.router").init_worker()
    }
--- config
    route_guard_root $TEST_NGINX_HTML_DIR/routes;
    location ~ ^/lua/(?<name>.+)$ {
        route_guard $name;
        content_by_lua_block { require("gateway.router").serve() }
    }
--- user_files
>>> routes/hello.lua
ngx.say("hello, ", require("user_module").answer)
>>> lib/user_module.lua
return { answer = "from LUA_PATH" }
>>> modules/.keep
--- request
GET /lua/hello
--- response_body
hello, from LUA_PATH
