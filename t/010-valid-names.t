# Route names inside the grammar reach their script, through every channel
# (regex capture, query argument, raw $request_uri), up to the limits.

use FindBin;
use lib $FindBin::Bin;
use TestGateway;

# The channels: $1 of a regex location (nginx-normalized $uri), the
# "route" query argument (raw bytes) and the raw $request_uri.
my $config = <<'_EOC_';
    location ~ ^/lua/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        add_header X-Route-Result $route_guard_result always;
        add_header X-Route-Name $route_name always;
        content_by_lua_file $route_script;
    }

    location = /lua {
        route_guard $arg_route;
        route_guard_root html/routes;
        add_header X-Route-Result $route_guard_result always;
        content_by_lua_file $route_script;
    }

    location ^~ /raw/ {
        route_guard $raw_route;
        route_guard_root html/routes;
        add_header X-Route-Result $route_guard_result always;
        content_by_lua_file $route_script;
    }
_EOC_

my $http_config = <<'_EOC_';
    map $request_uri $raw_route {
        ~^/raw/(?<r>[^?]*)  $r;
        default             "";
    }
_EOC_

my $files = <<'_EOF_';
>>> routes/hello.lua
ngx.say("hello")
>>> routes/v1/time.lua
ngx.say("v1/time")
>>> routes/show.lua
ngx.say(ngx.var.route_name, " ", ngx.var.route_script, " ",
        ngx.var.route_guard_result)
_EOF_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(config => $config) unless exists $block->{config};
    $block->set_value(http_config => $http_config)
        unless exists $block->{http_config};
    $block->set_value(user_files => $files) unless exists $block->{user_files};
});

run_tests();

__DATA__

=== TEST 1: flat name
--- request
GET /lua/hello
--- response_body
hello
--- response_headers
X-Route-Result: ok
X-Route-Name: hello
--- no_error_log
route guard



=== TEST 2: nested name
--- request
GET /lua/v1/time
--- response_body
v1/time
--- response_headers
X-Route-Result: ok
X-Route-Name: v1/time



=== TEST 3: $route_name, $route_script and $route_guard_result seen by the script
--- request
GET /lua/show
--- response_body
show $TEST_NGINX_HTML_DIR/routes/show.lua ok



=== TEST 4: every allowed byte class: letters, digits, "_" first, "-" after the first
--- user_files
>>> routes/Az_09-x/_9-/9lives.lua
ngx.say(ngx.var.route_name)
--- request
GET /lua/Az_09-x/_9-/9lives
--- response_body
Az_09-x/_9-/9lives



=== TEST 5: names are case-sensitive (no folding)
--- user_files
>>> routes/Hello.lua
ngx.say("upper")
>>> routes/hello.lua
ngx.say("lower")
--- request eval
["GET /lua/Hello", "GET /lua/hello"]
--- response_body eval
["upper\n", "lower\n"]



=== TEST 6: query argument channel
--- request eval
["GET /lua?route=hello", "GET /lua?route=v1/time", "GET /lua?x=1&route=show&y=2"]
--- response_body eval
["hello\n", "v1/time\n", "show $ENV{TEST_NGINX_HTML_DIR}/routes/show.lua ok\n"]



=== TEST 7: raw $request_uri channel
--- request eval
["GET /raw/hello", "GET /raw/v1/time?ignored=1"]
--- response_body eval
["hello\n", "v1/time\n"]
--- response_headers
X-Route-Result: ok



=== TEST 8: named capture as the value
--- config
    location ~ ^/n/(?<rname>.+)$ {
        route_guard $rname;
        route_guard_root html/routes;
        content_by_lua_file $route_script;
    }
--- request
GET /n/v1/time
--- response_body
v1/time



=== TEST 9: a segment of exactly 64 bytes (the default maximum)
--- user_files eval
">>> routes/" . ("s" x 64) . ".lua\nngx.say(#ngx.var.route_name)\n"
--- request eval
"GET /lua/" . ("s" x 64)
--- response_body
64



=== TEST 10: exactly 8 segments (the default maximum)
--- user_files
>>> routes/a/b/c/d/e/f/g/h.lua
ngx.say(ngx.var.route_name)
--- request
GET /lua/a/b/c/d/e/f/g/h
--- response_body
a/b/c/d/e/f/g/h



=== TEST 11: exactly 255 bytes in all (the default maximum)
--- user_files eval
# 4 * 63 + 3 = 255
">>> routes/" . ("a" x 63) . "/" . ("b" x 63) . "/" . ("c" x 63) . "/"
. ("d" x 63) . ".lua\nngx.say(#ngx.var.route_name)\n"
--- request eval
"GET /lua/" . ("a" x 63) . "/" . ("b" x 63) . "/" . ("c" x 63) . "/"
. ("d" x 63)
--- response_body
255



=== TEST 12: raised limits admit longer and deeper names
--- config
    location ~ ^/lua/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        route_guard_max_length 400;
        route_guard_max_segments 10;
        route_guard_max_segment_length 100;
        content_by_lua_file $route_script;
    }
--- user_files eval
">>> routes/" . ("x" x 100) . ".lua\nngx.say('long')\n"
. ">>> routes/a/b/c/d/e/f/g/h/i/j.lua\nngx.say('deep')\n"
--- request eval
["GET /lua/" . ("x" x 100), "GET /lua/a/b/c/d/e/f/g/h/i/j"]
--- response_body eval
["long\n", "deep\n"]



=== TEST 13: absolute route_guard_root
--- config
    location ~ ^/lua/(.+)$ {
        route_guard $1;
        route_guard_root $TEST_NGINX_HTML_DIR/routes;
        content_by_lua_file $route_script;
    }
--- request
GET /lua/show
--- response_body
show $TEST_NGINX_HTML_DIR/routes/show.lua ok



=== TEST 14: $route_script is under the real path of a symlinked root
--- config
    location ~ ^/lua/(.+)$ {
        route_guard $1;
        route_guard_root html/routes-link;
        content_by_lua_file $route_script;
    }
--- init
symlink 'routes', 'routes-link' or die $!;
--- request
GET /lua/show
--- response_body
show $TEST_NGINX_HTML_DIR/routes/show.lua ok



=== TEST 15: the variables are empty where the guard did not run
--- config
    location = /plain {
        return 200 "[$route_guard_result][$route_name][$route_script]\n";
    }
--- request
GET /plain
--- response_body
[][][]



=== TEST 16: route_guard and route_guard_root inherited from the server level
--- config
    route_guard $arg_r;
    route_guard_root html/routes;

    location = /s {
        content_by_lua_file $route_script;
    }
--- request
GET /s?r=v1/time
--- response_body
v1/time



=== TEST 17: one location serves many names, each with its own script
--- request eval
["GET /lua/hello", "GET /lua/v1/time", "GET /lua/hello", "GET /lua/show"]
--- response_body eval
["hello\n", "v1/time\n", "hello\n",
 "show $ENV{TEST_NGINX_HTML_DIR}/routes/show.lua ok\n"]
