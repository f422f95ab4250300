# Hot swap of the Lua modules that routes require from the modules tree
# (route_guard_modules + gateway.modules): an edited module, and every
# module that required it, is dropped from package.loaded, so the next
# request's require loads consistent new code; nested names map to
# subdirectories; a module that used the FFI while loading is kept as it
# is, with a warning and an entry under pinned_modules in GET /status; a
# module that does not load fails the request, not the worker.
#
# As in 070-hot-reload.t the loops run in --- setup, one request per new
# connection, and die with the mismatches they collected, so each loop is
# one check.

use FindBin;
use lib $FindBin::Bin;
use TestGateway;
use TestRuntime;
use JSON::PP ();

my $files = <<'_EOF_';
>>> routes/greet.lua
local greet = require "greet"
ngx.say(greet.hi())
>>> lib/greet.lua
local _M = {}
function _M.hi() return "hello 0" end
return _M
>>> routes/chain.lua
ngx.say(require("a").get())
>>> lib/a.lua
local b = require "b"
local value = b.value
return { get = function() return "a sees " .. value end }
>>> lib/b.lua
return { value = 0 }
>>> routes/text.lua
ngx.say(require("util.text").shout("hi"))
>>> lib/util/text.lua
return { shout = function(s) return s:upper() .. " 0" end }
>>> routes/cffi.lua
ngx.say(require("cffi").v)
>>> lib/cffi.lua
local ffi = require "ffi"
ffi.cdef[[int abs(int);]]
return { v = 1, abs = ffi.C.abs }
>>> routes/clib.lua
ngx.say(require("clib").v)
>>> lib/clib.lua
local ffi = require "ffi"
local libm = ffi.load("libm.so.6")
return { v = 1, libm = libm }
>>> routes/missing.lua
ngx.say(require("nosuch").v)
_EOF_

runtime_blocks($files);


# --- helpers for the setup code (package main) ---

# the worker pids of the running nginx, to tell that none died
sub workers_now {
    my $master = do {
        open my $fh, '<', TestGateway::server_root() . '/logs/nginx.pid'
            or die "nginx.pid: $!\n";
        my $p = <$fh>; chomp $p; $p;
    };
    return sort { $a <=> $b } TestGateway::child_pids($master);
}

our $Leak = qr{lua|lib/|servroot|nosuch|unexpected|near '|expected}i;

run_tests();

__DATA__

=== TEST 1: an edited module is used by the next request (rename-replace, 200 cycles, 2 workers)
--- workers: 2
--- setup
my (%seen, @errs);
warm_both('/lua/greet', 200, "hello 0\n");
my $from = log_pos();
for my $i (1 .. 200) {
    replace_file('lib/greet.lua', <<"_LUA_");
local _M = {}
function _M.hi() return "hello $i" end
return _M
_LUA_
    my $r = get('/lua/greet');
    $seen{$r->{worker}}++;
    expect(\@errs, "cycle $i", $r, 200, "hello $i\n");
}
both_workers('module edits', \%seen);
push @errs, "no 'module \"greet\" changed' line in the log"
    unless count_lines($from, qr/gateway: module "greet" changed/);
verdict('module edits', \@errs);
--- timeout: 10
--- request
GET /lua/greet
--- response_body
hello 200
--- no_error_log
[error]
[warn]


=== TEST 2: transitive: route -> a -> b; an edit of b reaches the route through a
--- workers: 2
--- setup
my (%seen, @errs);
warm_both('/lua/chain', 200, "a sees 0\n");
my $from = log_pos();
for my $i (1 .. 200) {
    replace_file('lib/b.lua', "return { value = $i }\n");
    my $r = get('/lua/chain');
    $seen{$r->{worker}}++;
    expect(\@errs, "cycle $i", $r, 200, "a sees $i\n");
}
both_workers('transitive', \%seen);
# b changed; a, which captured b.value while loading, went with it
push @errs, "no 'module \"b\" changed, unloading it and 1 dependents'"
            . " line in the log"
    unless count_lines($from,
                       qr/gateway: module "b" changed.*\b1 dependent/);
verdict('transitive', \@errs);
--- timeout: 10
--- request
GET /lua/chain
--- response_body
a sees 200
--- no_error_log
[error]


=== TEST 3: an edit of a in the same chain, and of both at once
--- workers: 2
--- setup
my @errs;
warm_both('/lua/chain', 200, "a sees 0\n");
for my $i (1 .. 50) {
    replace_file('lib/a.lua', <<"_LUA_");
local b = require "b"
local value = b.value
return { get = function() return "a$i sees " .. value end }
_LUA_
    expect(\@errs, "a edited, cycle $i", get('/lua/chain'), 200,
           "a$i sees 0\n");
}
for my $i (1 .. 50) {
    replace_file('lib/b.lua', "return { value = $i }\n");
    replace_file('lib/a.lua', <<"_LUA_");
local b = require "b"
local value = b.value
return { get = function() return "A$i sees " .. value end }
_LUA_
    expect(\@errs, "both edited, cycle $i", get('/lua/chain'), 200,
           "A$i sees $i\n");
}
verdict('edits of a', \@errs);
--- request
GET /lua/chain
--- response_body
A50 sees 50


=== TEST 4: a module edited into a syntax error: 5xx or the old module, the worker lives, logged; fixing it recovers
--- workers: 2
--- setup
my (%seen, %answers, @errs);
my $before = warm_both('/lua/greet', 200, "hello 0\n");
my @pids = workers_now();
my $from = log_pos();
replace_file('lib/greet.lua', "local _M = {\nfunction _M.hi() return 1 end\n");
spread(\%seen, 100, 1000, sub {
    my $i = shift;
    my $r = get('/lua/greet');
    if ($r->{status} >= 500) {
        $answers{$r->{status}}++;
        push @errs, "request $i: the error page leaks: " . show($r)
            if $r->{body} =~ $main::Leak;
    } elsif ($r->{status} == 200 && $r->{body} eq "hello 0\n") {
        $answers{'old module'}++;
    } else {
        push @errs, "request $i: want 5xx or 'hello 0', got " . show($r);
    }
    return $r->{worker};
});
both_workers('broken module', \%seen);
push @errs, "the broken module is not logged at [error]"
    unless log_since($from)
           =~ /\[error\][^\n]*error loading module 'greet'.*?greet\.lua:\d+: /s;
my @after = workers_now();
push @errs, "workers changed from (@pids) to (@after)"
    unless "@pids" eq "@after";
push @errs, "a worker that was not there before answered: "
            . join(' ', grep { !$before->{$_} } keys %seen)
    if grep { !$before->{$_} } keys %seen;
Test::More::diag('broken module, observed: '
                 . join(', ', map { "$_ x $answers{$_}" } sort keys %answers));

# fixed: the next request runs the new module, in both workers
%seen = ();
replace_file('lib/greet.lua', <<'_LUA_');
local _M = {}
function _M.hi() return "hello 3" end
return _M
_LUA_
spread(\%seen, 20, 1000, sub {
    my $i = shift;
    my $r = get('/lua/greet');
    expect(\@errs, "fixed, request $i", $r, 200, "hello 3\n");
    return $r->{worker};
});
both_workers('fixed module', \%seen);
verdict('broken module', \@errs);
--- request
GET /lua/greet
--- response_body
hello 3


=== TEST 5: an FFI module (ffi.cdef) is kept after an edit, with a warning and /status pinned_modules
--- workers: 2
--- setup
my (%seen, @errs);
warm_both('/lua/cffi', 200, "1\n");
my $pinned = qr/\[warn\].*gateway: module "cffi" uses the FFI.*cannot be unloaded: reload nginx/;

my $from = log_pos();
replace_file('lib/cffi.lua', <<'_LUA_');
local ffi = require "ffi"
ffi.cdef[[int abs(int);]]
return { v = 2, abs = ffi.C.abs }
_LUA_
spread(\%seen, 100, 1000, sub {
    my $i = shift;
    my $r = get('/lua/cffi');
    expect(\@errs, "edited to v = 2, request $i", $r, 200, "1\n");
    return $r->{worker};
});
both_workers('FFI module', \%seen);
my $n = count_lines($from, $pinned);
push @errs, "v = 2: want 1 or 2 'uses the FFI' warnings (once per worker),"
            . " got $n"
    unless $n >= 1 && $n <= 2;
my $report = status_report();
push @errs, "/status pinned_modules.cffi is '"
            . ($report->{pinned_modules}{cffi} // '(none)')
            . "', want 'ffi.cdef'"
    unless ($report->{pinned_modules}{cffi} // '') eq 'ffi.cdef';

# unrelated changes in the tree: no new warning for the same version
$from = log_pos();
write_file('lib/other.lua', "return {}\n");
unlink 'lib/other.lua' or die "unlink: $!";
for my $i (1 .. 20) {
    expect(\@errs, "after unrelated changes, request $i", get('/lua/cffi'),
           200, "1\n");
}
$n = count_lines($from, $pinned);
push @errs, "unrelated changes: $n new 'uses the FFI' warnings" if $n;

# another edit: warned again, still the first version
$from = log_pos();
%seen = ();
replace_file('lib/cffi.lua', <<'_LUA_');
local ffi = require "ffi"
ffi.cdef[[int abs(int);]]
return { v = 3, abs = ffi.C.abs }
_LUA_
spread(\%seen, 50, 1000, sub {
    my $i = shift;
    my $r = get('/lua/cffi');
    expect(\@errs, "edited to v = 3, request $i", $r, 200, "1\n");
    return $r->{worker};
});
$n = count_lines($from, $pinned);
push @errs, "v = 3: want 1 or 2 'uses the FFI' warnings, got $n"
    unless $n >= 1 && $n <= 2;
verdict('FFI module', \@errs);
--- request
GET /lua/cffi
--- response_body
1
--- no_error_log
[error]
uses the FFI


=== TEST 6: an FFI module (ffi.load) is kept after an edit too
--- workers: 2
--- setup
my (%seen, @errs);
warm_both('/lua/clib', 200, "1\n");
my $from = log_pos();
replace_file('lib/clib.lua', <<'_LUA_');
local ffi = require "ffi"
local libm = ffi.load("libm.so.6")
return { v = 2, libm = libm }
_LUA_
spread(\%seen, 50, 1000, sub {
    my $i = shift;
    my $r = get('/lua/clib');
    expect(\@errs, "edited, request $i", $r, 200, "1\n");
    return $r->{worker};
});
my $n = count_lines($from,
    qr/\[warn\].*gateway: module "clib" uses the FFI.*cannot be unloaded/);
push @errs, "want 1 or 2 'uses the FFI' warnings, got $n"
    unless $n >= 1 && $n <= 2;
my $report = status_report();
push @errs, "/status pinned_modules.clib is '"
            . ($report->{pinned_modules}{clib} // '(none)')
            . "', want 'ffi.load'"
    unless ($report->{pinned_modules}{clib} // '') eq 'ffi.load';
verdict('ffi.load module', \@errs);
--- request
GET /lua/clib
--- response_body
1


=== TEST 7: nested name: require "util.text" loads lib/util/text.lua, and edits propagate
--- workers: 2
--- setup
my (%seen, @errs);
warm_both('/lua/text', 200, "HI 0\n");
for my $i (1 .. 100) {
    replace_file('lib/util/text.lua',
        qq{return { shout = function(s) return s:upper() .. " $i" end }\n});
    my $r = get('/lua/text');
    $seen{$r->{worker}}++;
    expect(\@errs, "cycle $i", $r, 200, "HI $i\n");
}
both_workers('nested module', \%seen);

# a subdirectory made while running: watched, and its modules swapped
mkdir 'lib/fresh' or die "mkdir: $!";
chmod 0755, 'lib/fresh';
write_file('lib/fresh/mod.lua', "return { v = 'fresh 0' }\n");
write_file('routes/fresh.lua', qq{ngx.say(require("fresh.mod").v)\n});
warm_both('/lua/fresh', 200, "fresh 0\n");
for my $i (1 .. 50) {
    replace_file('lib/fresh/mod.lua', "return { v = 'fresh $i' }\n");
    expect(\@errs, "new subdirectory, cycle $i", get('/lua/fresh'), 200,
           "fresh $i\n");
}
verdict('nested module', \@errs);
--- timeout: 10
--- request eval
["GET /lua/text", "GET /lua/fresh"]
--- response_body eval
["HI 100\n", "fresh 50\n"]
--- no_error_log
[error]


=== TEST 8: a module that is not found: 500, logged, the worker lives; created, it is found
--- workers: 2
--- setup
my (%seen, @errs);
my @pids = workers_now();
spread(\%seen, 20, 1000, sub {
    my $i = shift;
    my $r = get('/lua/missing');
    expect(\@errs, "request $i", $r, 500);
    push @errs, "request $i: the error page leaks: " . show($r)
        if $r->{body} =~ $main::Leak;
    expect(\@errs, "another route, request $i", get('/lua/greet'), 200,
           "hello 0\n");
    return $r->{worker};
});
both_workers('missing module', \%seen);
my @after = workers_now();
push @errs, "workers changed from (@pids) to (@after)"
    unless "@pids" eq "@after";

write_file('lib/nosuch.lua', "return { v = 'found' }\n");
%seen = ();
spread(\%seen, 10, 1000, sub {
    my $i = shift;
    my $r = get('/lua/missing');
    expect(\@errs, "created, request $i", $r, 200, "found\n");
    return $r->{worker};
});
verdict('missing module', \@errs);
--- request eval
["GET /lua/missing", "GET /lua/greet"]
--- response_body eval
["found\n", "hello 0\n"]


=== TEST 9: the log says which module was not found
--- workers: 1
--- request
GET /lua/missing
--- error_code: 500
--- response_body_unlike eval
$main::Leak
--- error_log eval
qr/\[error\].*module 'nosuch' not found/


=== TEST 10: a module edited to raise while loading: 5xx, the worker lives; fixing it recovers
A runtime error in the module's body (not a syntax error, which the
searcher reports) happens inside require's loader call; the worker must
survive it and the next request after the fix must load the new module.
--- workers: 2
--- user_files
>>> routes/rt.lua
ngx.say(require("rt").v)
>>> lib/rt.lua
return { v = "rt 0" }
>>> routes/born.lua
ngx.say(require("born").v)
>>> lib/born.lua
error("born broken")
--- setup
my (%seen, @errs);
warm_both('/lua/rt', 200, "rt 0\n");
my @pids = workers_now();
my $from = log_pos();
replace_file('lib/rt.lua', qq{error("load boom")\n});
spread(\%seen, 20, 1000, sub {
    my $i = shift;
    my $r = get('/lua/rt');
    push @errs, "raising, request $i: want 5xx or 'rt 0', got " . show($r)
        unless $r->{status} >= 500
               || ($r->{status} == 200 && $r->{body} eq "rt 0\n");
    return $r->{worker};
});
push @errs, "the error is not logged"
    unless log_since($from) =~ /\[error\].*load boom/;

# a module that raised on its very first load
for my $i (1 .. 10) {
    expect(\@errs, "born broken, request $i", get('/lua/born'), 500);
}

replace_file('lib/rt.lua', qq{return { v = "rt 2" }\n});
replace_file('lib/born.lua', qq{return { v = "born fixed" }\n});
%seen = ();
spread(\%seen, 20, 1000, sub {
    my $i = shift;
    my $r = get('/lua/rt');
    expect(\@errs, "fixed, request $i", $r, 200, "rt 2\n");
    expect(\@errs, "born fixed, request $i", get('/lua/born'), 200,
           "born fixed\n");
    return $r->{worker};
});
both_workers('fixed after raising', \%seen);
my @after = workers_now();
push @errs, "workers changed from (@pids) to (@after)"
    unless "@pids" eq "@after";
verdict('module raising while loading', \@errs);
--- request eval
["GET /lua/rt", "GET /lua/born"]
--- response_body eval
["rt 2\n", "born fixed\n"]


=== TEST 11: an FFI module whose dependency changed is kept, and the operator is told
p uses the FFI and required dep while loading: an edit of dep would
unload p as a dependent, which cannot be done; p keeps the old dep, so
the warning and pinned_modules must say that p needs a reload.
--- workers: 1
--- user_files
>>> routes/p.lua
ngx.say(require("p").get())
>>> lib/p.lua
local ffi = require "ffi"
ffi.cdef[[int abs(int);]]
local dep = require "dep"
return { get = function() return dep.v end }
>>> lib/dep.lua
return { v = 1 }
--- setup
my @errs;
expect(\@errs, 'before', get('/lua/p'), 200, "1\n");
my $from = log_pos();
replace_file('lib/dep.lua', "return { v = 2 }\n");
for my $i (1 .. 10) {
    expect(\@errs, "dep edited, request $i", get('/lua/p'), 200, "1\n");
}
my $n = count_lines($from, qr/\[warn\].*gateway: module "p" uses the FFI.*reload nginx/);
push @errs, "want 1 warning that \"p\" cannot be unloaded, got $n"
    unless $n == 1;
my $report = status_report();
push @errs, "/status pinned_modules does not list p: "
            . JSON::PP::encode_json($report)
    unless $report->{pinned_modules}{p};
verdict('FFI module with a changed dependency', \@errs);
--- request
GET /lua/p
--- response_body
1
