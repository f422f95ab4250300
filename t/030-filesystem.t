# Valid names meet the file system: missing scripts, symlinks inside and
# outside the root, things that are not regular files, unreadable files,
# bytecode, scripts added while nginx runs, and configuration errors.

use FindBin;
use lib $FindBin::Bin;
use TestGateway;

my $config = <<'_EOC_';
    location ~ ^/lua/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        add_header X-Route-Result $route_guard_result always;
        content_by_lua_file $route_script;
    }
_EOC_

# serves real LuaJIT bytecode, made by the nginx under test
my $bytecode_maker = <<'_EOC_';
    location = /mkbc {
        content_by_lua_block {
            local f = assert(loadstring("ngx.say('from bytecode')"))
            ngx.print(string.dump(f))
        }
    }
_EOC_

my $files = <<'_EOF_';
>>> routes/hello.lua
ngx.say("hello")
>>> routes/v1/time.lua
ngx.say("v1/time")
>>> secret.lua
ngx.say("SECRET outside the root")
>>> outside/x.lua
ngx.say("SECRET outside dir")
_EOF_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(config => $config) unless exists $block->{config};
    $block->set_value(user_files => $files) unless exists $block->{user_files};
});

our $BytecodeMaker = $bytecode_maker;

run_tests();

__DATA__

=== TEST 1: valid name without a script: 404, logged at info
--- request
GET /lua/nope
--- error_code: 404
--- response_headers
X-Route-Result: missing
--- response_body_like: 404 Not Found
--- response_body_unlike: servroot|routes|\.lua|nope
--- error_log eval
qr/\[info\] .*route guard: no script for route "nope"/
--- no_error_log
[error]



=== TEST 2: a directory named like the route (without .lua) is not a script
--- request eval
["GET /lua/v1", "GET /lua/v1/nope"]
--- error_code eval
[404, 404]
--- response_headers
X-Route-Result: missing
--- error_log
no script for route "v1"
no script for route "v1/nope"



=== TEST 3: custom missing status
--- config
    location ~ ^/lua/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        route_guard_missing_status 410;
        content_by_lua_file $route_script;
    }
--- request
GET /lua/nope
--- error_code: 410



=== TEST 4: relative symlink to a file inside the root is followed
--- init
symlink 'hello.lua', 'routes/alias.lua' or die $!;
symlink '../hello.lua', 'routes/v1/up.lua' or die $!;
symlink 'v1/time.lua', 'routes/down.lua' or die $!;
--- request eval
["GET /lua/alias", "GET /lua/v1/up", "GET /lua/down"]
--- response_body eval
["hello\n", "hello\n", "v1/time\n"]
--- response_headers
X-Route-Result: ok



=== TEST 5: absolute symlink is refused even when it points inside the root
RESOLVE_BENEATH refuses every absolute symlink; aliases inside the tree
are written as relative links (TEST 4, TEST 6).
--- init
symlink "$html_dir/routes/v1/time.lua", 'routes/abs-alias.lua' or die $!;
--- request
GET /lua/abs-alias
--- error_code: 503
--- response_headers
X-Route-Result: symlink_escape
--- response_body_unlike: v1/time|servroot|routes



=== TEST 6: symlinked directory inside the root is followed
--- init
symlink 'v1', 'routes/v2' or die $!;
--- request
GET /lua/v2/time
--- response_body
v1/time



=== TEST 7: symlink escaping the root with an absolute target
--- init
symlink "$html_dir/secret.lua", 'routes/evil.lua' or die $!;
--- request
GET /lua/evil
--- error_code: 503
--- response_headers
X-Route-Result: symlink_escape
--- response_body_unlike: SECRET|servroot|routes|\.lua
--- error_log eval
qr/\[error\] .*route guard: route "evil" escapes the routes root/



=== TEST 8: symlink escaping the root with a relative target
--- init
symlink '../secret.lua', 'routes/evil.lua' or die $!;
--- request
GET /lua/evil
--- error_code: 503
--- response_headers
X-Route-Result: symlink_escape
--- response_body_unlike: SECRET
--- error_log
route "evil" escapes the routes root



=== TEST 9: symlink to a system file
--- init
symlink '/etc/passwd', 'routes/passwd.lua' or die $!;
--- request
GET /lua/passwd
--- error_code: 503
--- response_headers
X-Route-Result: symlink_escape
--- response_body_unlike: root:



=== TEST 10: symlinked directory escaping the root
--- init
symlink '../outside', 'routes/out' or die $!;
--- request
GET /lua/out/x
--- error_code: 503
--- response_headers
X-Route-Result: symlink_escape
--- response_body_unlike: SECRET
--- error_log
route "out/x" escapes the routes root



=== TEST 11: a directory named x.lua is not a regular file
--- init
mkdir 'routes/dir.lua' or die $!;
--- request
GET /lua/dir
--- error_code: 503
--- response_headers
X-Route-Result: not_regular
--- response_body_like: 503 Service Temporarily Unavailable
--- response_body_unlike: servroot|routes|\.lua
--- error_log eval
qr/\[error\] .*route guard: route "dir" is not a regular file/



=== TEST 12: a FIFO named x.lua is refused at once, and the worker is still free
--- init
POSIX::mkfifo('routes/fifo.lua', 0644) or die "mkfifo: $!";
--- request eval
["GET /lua/fifo", "GET /lua/hello"]
--- timeout: 3
--- error_code eval
[503, 200]
--- response_headers eval
["X-Route-Result: not_regular", "X-Route-Result: ok"]
--- error_log
route "fifo" is not a regular file



=== TEST 13: unreadable file (workers run as nobody)
--- init
chmod 0000, 'routes/hello.lua' or die $!;
--- request
GET /lua/hello
--- error_code: 503
--- response_headers
X-Route-Result: unreadable
--- response_body_unlike: hello
--- error_log
route "hello" is not readable



=== TEST 14: custom unusable status
--- config
    location ~ ^/lua/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        route_guard_unusable_status 500;
        content_by_lua_file $route_script;
    }
--- init
mkdir 'routes/dir.lua' or die $!;
--- request
GET /lua/dir
--- error_code: 500



=== TEST 15: a file starting with ESC is bytecode, refused by default
--- init
write_file('routes/bc.lua', "\x1bLJ\x02\x00\x00\x00garbage");
--- request
GET /lua/bc
--- error_code: 503
--- response_headers
X-Route-Result: bytecode
--- error_log eval
qr/\[error\] .*route guard: route "bc" is bytecode and route_guard_bytecode is off/



=== TEST 16: real LuaJIT bytecode is refused by default
--- config eval
$::BytecodeMaker . <<'_EOC_'
    location ~ ^/lua/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        add_header X-Route-Result $route_guard_result always;
        content_by_lua_file $route_script;
    }
_EOC_
--- setup
my $res = http_request("GET /mkbc");
die "no bytecode: $res->{status}" unless $res->{status} == 200
                                         && $res->{body} =~ /^\x1bLJ/;
write_file('routes/bc.lua', $res->{body});
--- request
GET /lua/bc
--- error_code: 503
--- response_headers
X-Route-Result: bytecode



=== TEST 17: bytecode runs with route_guard_bytecode on
--- config eval
$::BytecodeMaker . <<'_EOC_'
    location ~ ^/lua/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        route_guard_bytecode on;
        add_header X-Route-Result $route_guard_result always;
        content_by_lua_file $route_script;
    }
_EOC_
--- setup
my $res = http_request("GET /mkbc");
die "no bytecode: $res->{status}" unless $res->{status} == 200
                                         && $res->{body} =~ /^\x1bLJ/;
write_file('routes/bc.lua', $res->{body});
--- request eval
["GET /lua/bc", "GET /lua/hello"]
--- response_body eval
["from bytecode\n", "hello\n"]
--- response_headers
X-Route-Result: ok



=== TEST 18: a script created after nginx started is served without a reload
--- setup
write_file('routes/late.lua', "ngx.say('late')\n");
mkdir 'routes/new' or die $!;
chmod 0755, 'routes/new';
write_file('routes/new/deep.lua', "ngx.say('new/deep')\n");
--- request eval
["GET /lua/late", "GET /lua/new/deep"]
--- response_body eval
["late\n", "new/deep\n"]



=== TEST 19: a script removed after nginx started is missing
--- setup
unlink 'routes/hello.lua' or die $!;
--- request
GET /lua/hello
--- error_code: 404
--- response_headers
X-Route-Result: missing



=== TEST 20: a symlink made to escape after nginx started is caught
--- init
symlink 'hello.lua', 'routes/flip.lua' or die $!;
--- setup
my $res = http_request("GET /lua/flip");
die "before the flip: $res->{status}" unless $res->{status} == 200;
unlink 'routes/flip.lua' or die $!;
symlink '../secret.lua', 'routes/flip.lua' or die $!;
--- request
GET /lua/flip
--- error_code: 503
--- response_headers
X-Route-Result: symlink_escape
--- response_body_unlike: SECRET



=== TEST 21: route_guard without route_guard_root is a configuration error
--- config
    location ~ ^/lua/(.+)$ {
        route_guard $1;
        content_by_lua_file $route_script;
    }
--- must_die
--- error_log
[emerg]
--- no_error_log
unknown directive



=== TEST 22: route_guard_root that does not exist
--- config
    location ~ ^/lua/(.+)$ {
        route_guard $1;
        route_guard_root html/no-such-dir;
        content_by_lua_file $route_script;
    }
--- must_die
--- error_log
[emerg]
--- no_error_log
unknown directive



=== TEST 23: route_guard_root that is not a directory
--- config
    location ~ ^/lua/(.+)$ {
        route_guard $1;
        route_guard_root html/secret.lua;
        content_by_lua_file $route_script;
    }
--- must_die
--- error_log
[emerg]
--- no_error_log
unknown directive



=== TEST 24: route_guard_root at the server level serves every guarded location
--- config
    route_guard_root html/routes;

    location ~ ^/a/(.+)$ {
        route_guard $1;
        content_by_lua_file $route_script;
    }
    location = /b {
        route_guard $arg_r;
        content_by_lua_file $route_script;
    }
--- request eval
["GET /a/hello", "GET /b?r=v1/time"]
--- response_body eval
["hello\n", "v1/time\n"]
