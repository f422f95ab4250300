# Runtime and system modules win over the modules tree: require looks in
# package.loaded and package.preload, then package.path and package.cpath,
# and only then in the modules tree (route_guard_modules +
# gateway.modules).  A file of the tree that a runtime or system module
# shadows is not loaded, and each worker logs it once per name at [warn];
# the modules the tree does provide still load and hot-reload.  A module
# loaded from the tree stays while its file is unchanged; once it is
# unloaded, the next require follows the rule again, so a system module
# installed meanwhile takes its place.
#
# As in 080-modules.t the loops run in --- setup, one request per new
# connection, and die with the mismatches they collected.

use FindBin;
use lib $FindBin::Bin;
use TestGateway;
use TestRuntime;

# each route prints what it got: the real module's function, and the
# "fake" mark that only the tree's impostors have (nil for the real one)
my $files = <<'_EOF_';
>>> routes/cjson.lua
local cjson = require "cjson"
ngx.say(cjson.encode({ 1, 2 }), " ", tostring(cjson.fake))
>>> lib/cjson.lua
return { fake = true, encode = function() return "fake" end }
>>> routes/core.lua
local core = require "resty.core"
ngx.say(type(core.version), " ", tostring(core.fake))
>>> lib/resty/core.lua
return { fake = true }
>>> routes/router.lua
local router = require "gateway.router"
ngx.say(type(router.serve), " ", tostring(router.fake))
>>> lib/gateway/router.lua
return { fake = true }
>>> routes/process.lua
local process = require "ngx.process"
ngx.say(process.type(), " ", tostring(process.fake))
>>> lib/ngx/process.lua
return { fake = true, type = function() return "fake" end }
>>> routes/lrucache.lua
local lrucache = require "resty.lrucache"
ngx.say(type(lrucache.new), " ", tostring(lrucache.fake))
>>> lib/resty/lrucache.lua
return { fake = true }
>>> routes/mine.lua
ngx.say(require("mine").v, " ", require("gateway.extra").v)
>>> lib/mine.lua
return { v = "mine 0" }
>>> lib/gateway/extra.lua
return { v = "extra 0" }
_EOF_

runtime_blocks($files);


# --- helpers for the setup code (package main) ---

# the warning about "name" (tree file "file"), by worker "pid" if given
sub shadowed_re {
    my ($name, $file, $pid) = @_;
    my $by = defined $pid ? qr/\Q$pid\E#\d+: / : qr/\d+#\d+: /;
    return qr/\[warn\] $by.*gateway: module "\Q$name\E" \(\Q$file\E in the modules tree\) is shadowed by a runtime or system module and ignored/;
}

our %Shadowed = (
    'cjson'          => 'cjson.lua',
    'resty.core'     => 'resty/core.lua',
    'gateway.router' => 'gateway/router.lua',
    'ngx.process'    => 'ngx/process.lua',
    'resty.lrucache' => 'resty/lrucache.lua',
);

our %Real = (
    '/lua/cjson'    => "[1,2] nil\n",
    '/lua/core'     => "string nil\n",
    '/lua/router'   => "function nil\n",
    '/lua/process'  => "worker nil\n",
    '/lua/lrucache' => "function nil\n",
);

# pushes onto @$errs unless each shadowed name was warned about $want
# times since $from (by any worker)
sub warned_times {
    my ($errs, $ctx, $from, $want) = @_;
    for my $name (sort keys %Shadowed) {
        my $n = count_lines($from, shadowed_re($name, $Shadowed{$name}));
        push @$errs, "$ctx: want $want warnings that \"$name\" is shadowed,"
                     . " got $n"
            unless $n == $want;
    }
}

# pushes onto @$errs unless each worker in @$pids warned once about each
# shadowed name in all its life (gateway.router is required, so warned
# about, as early as init_worker_by_lua)
sub warned_once_by {
    my ($errs, $ctx, $pids) = @_;
    for my $pid (@$pids) {
        for my $name (sort keys %Shadowed) {
            my $n = count_lines(0, shadowed_re($name, $Shadowed{$name}, $pid));
            push @$errs, "$ctx: want worker $pid to warn once that \"$name\""
                         . " is shadowed, got $n"
                unless $n == 1;
        }
    }
}

run_tests();

__DATA__

=== TEST 1: cjson, resty.core, gateway.router, ngx.process, resty.lrucache in the tree: the real ones are used, each logged once
--- workers: 1
--- setup
my (%seen, @errs);
for my $i (1 .. 5) {
    for my $path (sort keys %main::Real) {
        my $r = get($path);
        $seen{$r->{worker}}++;
        expect(\@errs, "request $i", $r, 200, $main::Real{$path});
    }
}
warned_once_by(\@errs, 'five requests each', [keys %seen]);
verdict('shadowed modules', \@errs);
--- request eval
["GET /lua/cjson", "GET /lua/core", "GET /lua/router", "GET /lua/process",
 "GET /lua/lrucache"]
--- response_body eval
["[1,2] nil\n", "string nil\n", "function nil\n", "worker nil\n",
 "function nil\n"]
--- no_error_log
[error]
is shadowed


=== TEST 2: a module the tree provides still loads and hot-reloads, beside the shadowed ones; no new warnings
"gateway.extra" is in the runtime's namespace but not a runtime module:
nothing shadows it.
--- workers: 2
--- setup
my (%seen, @errs);
my $workers = warm_both('/lua/mine', 200, "mine 0 extra 0\n");
# each worker warns once per name: let both have done so
warm_both($_, 200, $main::Real{$_}) for sort keys %main::Real;
warned_once_by(\@errs, 'before the edits', [keys %$workers]);
my $from = log_pos();
for my $i (1 .. 100) {
    replace_file('lib/mine.lua', qq{return { v = "mine $i" }\n});
    replace_file('lib/gateway/extra.lua', qq{return { v = "extra $i" }\n})
        if $i % 10 == 0;
    # the shadowed files change too: still ignored
    replace_file('lib/cjson.lua', "return { fake = $i }\n") if $i % 10 == 0;
    my $extra = 10 * int($i / 10);
    my $r = get('/lua/mine');
    $seen{$r->{worker}}++;
    expect(\@errs, "cycle $i", $r, 200, "mine $i extra $extra\n");
    expect(\@errs, "cycle $i", get('/lua/cjson'), 200, "[1,2] nil\n");
}
both_workers('module edits', \%seen);
push @errs, "no 'module \"mine\" changed' line in the log"
    unless count_lines($from, qr/gateway: module "mine" changed/);
for my $path (sort keys %main::Real) {
    expect(\@errs, "after the edits", get($path), 200, $main::Real{$path});
}
warned_times(\@errs, 'after the edits', $from, 0);
warned_once_by(\@errs, 'after the edits', [keys %$workers]);
verdict('a module of the tree beside shadowed ones', \@errs);
--- request eval
["GET /lua/mine", "GET /lua/cjson"]
--- response_body eval
["mine 100 extra 100\n", "[1,2] nil\n"]
--- no_error_log eval
["[error]", qr/module "mine".*shadowed/, qr/module "gateway\.extra".*shadowed/]


=== TEST 3: a shadowing file created while nginx runs: ignored, and logged once when the name is next required
--- workers: 1
--- user_files
>>> routes/cjson.lua
local cjson = require "cjson"
ngx.say(cjson.encode({ 1, 2 }), " ", tostring(cjson.fake))
>>> lib/.keep
--- setup
my @errs;
my $re = shadowed_re('cjson', 'cjson.lua');
my $from = log_pos();
for my $i (1 .. 5) {
    expect(\@errs, "no cjson.lua, request $i", get('/lua/cjson'), 200,
           "[1,2] nil\n");
}
my $n = count_lines($from, $re);
push @errs, "no cjson.lua: $n warnings" if $n;

write_file('lib/cjson.lua', "return { fake = true }\n");
for my $i (1 .. 20) {
    expect(\@errs, "cjson.lua created, request $i", get('/lua/cjson'), 200,
           "[1,2] nil\n");
}
$n = count_lines($from, $re);
push @errs, "cjson.lua created: want 1 warning, got $n" unless $n == 1;

replace_file('lib/cjson.lua', "return { fake = 2 }\n");
for my $i (1 .. 20) {
    expect(\@errs, "cjson.lua edited, request $i", get('/lua/cjson'), 200,
           "[1,2] nil\n");
}
$n = count_lines($from, $re);
push @errs, "cjson.lua edited: want still 1 warning, got $n" unless $n == 1;
verdict('a shadowing file created', \@errs);
--- request
GET /lua/cjson
--- response_body
[1,2] nil
--- no_error_log
[error]


=== TEST 4: a module of the tree that becomes shadowed: kept while unchanged, replaced by the system module when next loaded
sys/ is a system Lua directory, on package.path ahead of the runtime's.
--- workers: 1
--- http_config
    lua_package_path "$TEST_NGINX_HTML_DIR/sys/?.lua;$TEST_NGINX_ROOT/gateway/lib/?.lua;;";
    route_guard_modules $TEST_NGINX_HTML_DIR/lib;
    lua_shared_dict gateway_status 1m;
    lua_shared_dict gateway_scripts 8m;
    init_by_lua_block {
        require("gateway.router").init{ modules = "$TEST_NGINX_HTML_DIR/lib" }
    }
    init_worker_by_lua_block { require("gateway.router").init_worker() }
--- user_files
>>> routes/late.lua
ngx.say(require("late").v)
>>> routes/user.lua
ngx.say(require("user_of_late").get())
>>> lib/late.lua
return { v = "tree 0" }
>>> lib/user_of_late.lua
local late = require "late"
return { get = function() return "sees " .. late.v end }
>>> sys/.keep
--- setup
my @errs;
my $re = shadowed_re('late', 'late.lua');
my $from = log_pos();
expect(\@errs, 'before', get('/lua/late'), 200, "tree 0\n");
expect(\@errs, 'before', get('/lua/user'), 200, "sees tree 0\n");

# installed in sys/: the loaded module is kept, as runtime and system
# directories are not watched
write_file('sys/late.lua', qq{return { v = "system" }\n});
for my $i (1 .. 10) {
    expect(\@errs, "sys/late.lua installed, request $i", get('/lua/late'),
           200, "tree 0\n");
}
my $n = count_lines($from, $re);
push @errs, "sys/late.lua installed: $n warnings before the next load"
    if $n;

# the tree's file changes: unloaded with its dependent, loaded again by
# the rule, from sys/
replace_file('lib/late.lua', qq{return { v = "tree 1" }\n});
for my $i (1 .. 10) {
    expect(\@errs, "lib/late.lua edited, request $i", get('/lua/late'), 200,
           "system\n");
    expect(\@errs, "lib/late.lua edited, request $i", get('/lua/user'), 200,
           "sees system\n");
}
$n = count_lines($from, $re);
push @errs, "lib/late.lua edited: want 1 warning, got $n" unless $n == 1;

replace_file('lib/late.lua', qq{return { v = "tree 2" }\n});
for my $i (1 .. 10) {
    expect(\@errs, "edited again, request $i", get('/lua/late'), 200,
           "system\n");
}
$n = count_lines($from, $re);
push @errs, "edited again: want still 1 warning, got $n" unless $n == 1;
verdict('a module that becomes shadowed', \@errs);
--- request eval
["GET /lua/late", "GET /lua/user"]
--- response_body eval
["system\n", "sees system\n"]
--- no_error_log
[error]
