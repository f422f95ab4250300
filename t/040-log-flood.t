# Clients cannot flood the error log: invalid and missing names are info
# lines (nothing at the default "error" level), and unusable scripts are
# logged at most once a second per worker.

use FindBin;
use lib $FindBin::Bin;
use TestGateway;

log_level('error');

my $config = <<'_EOC_';
    location ~ ^/lua/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        content_by_lua_file $route_script;
    }

    location = /lua {
        route_guard $arg_route;
        route_guard_root html/routes;
        content_by_lua_file $route_script;
    }
_EOC_

my $files = <<'_EOF_';
>>> routes/hello.lua
ngx.say("hello")
_EOF_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(config => $config) unless exists $block->{config};
    $block->set_value(user_files => $files) unless exists $block->{user_files};
});

# 50 names for every class of the grammar's verdicts, 300 in all
our @Invalid = map {
    my $i = $_;
    ("GET /lua/a.b$i", "GET /lua/-dash$i", "GET /lua?route=v$i//x",
     "GET /lua?route=" . ("x" x 256) . $i,
     "GET /lua/" . join("/", (1 .. 9)) . "/$i",
     "GET /lua?route=%2e%2e%2f$i")
} 1 .. 50;

run_tests();

__DATA__

=== TEST 1: a flood of invalid names adds no line at the "error" level
--- request eval
\@::Invalid
--- error_code eval
[(400) x @::Invalid]
--- no_error_log eval
[qr/route guard/, qr/\S/]



=== TEST 2: a flood of missing names adds no line at the "error" level
--- request eval
[map { "GET /lua/nope$_" } 1 .. 200]
--- error_code eval
[(404) x 200]
--- no_error_log eval
[qr/route guard/, qr/\S/]



=== TEST 3: a flood of requests for an unusable script is logged at most once a second
--- init
mkdir 'routes/dir.lua' or die $!;
--- request eval
[("GET /lua/dir") x 100]
--- error_code eval
[(503) x 100]
--- error_log
route "dir" is not a regular file
--- no_error_log eval
# the requests take well under a second: one line, two if they straddle
[qr/(?:is not a regular file.*?){3}/s]



=== TEST 4: at the info level every invalid name is one info line
--- log_level: info
--- request eval
[map { "GET /lua/bad.$_" } 1 .. 20]
--- error_code eval
[(400) x 20]
--- error_log eval
[map { qr/\[info\] .*invalid route name \(bad byte\).*GET \/lua\/bad\.$_ HTTP/ } 1 .. 20]
--- no_error_log
[error]
