# The memory budget is enforced by the VM's allocator: an allocation
# past it is refused where it happens and LuaJIT raises "not enough
# memory" there.  Refusals must leave the VM consistent wherever they
# fall: string interning, table array and hash growth, closures, `..`,
# the C library (rep, format, concat, gsub, json.encode), the
# collector's own steps.  (json.decode runs with the allocator refusing
# nothing, after its worst case is reserved: a refusal inside lua-cjson
# would leak its buffer.)  A mixed script runs under every memory budget from nothing to
# what it needs, in small steps, so that the refusal falls on a
# different allocation each time; after each run trusted code in the
# same worker does the same kinds of work and checks its results.

use FindBin;
use lib $FindBin::Bin;
use TestGateway;
use TestSandbox;

# one worker: the trusted checks run in the VM the refusals hit
workers(1);

run_tests();

__DATA__

=== TEST 1: a refusal at any allocation leaves the worker's VM sound
--- config
    location ~ ^/sandbox/(.+)$ {
        route_guard $1;
        route_guard_root html/sandbox;
        content_by_lua_block {
            require("gateway.sandbox").serve{
                memory = tonumber(ngx.var.arg_m),
                time = 2 * $TEST_NGINX_SLOWDOWN }
        }
    }

    location = /trusted {
        content_by_lua_block {
            collectgarbage("collect")
            local t, h = {}, {}
            for i = 1, 2000 do
                t[i] = tostring(i) .. "x"
                h["k" .. i] = { i, tostring(i) }
            end
            local s = table.concat(t, ",")
            local n = select(2, s:gsub("%d+x", "%0y"))
            local j = require("cjson.safe").decode(
                          require("cjson.safe").encode(h))
            ngx.say(ngx.worker.pid(), " ", #s, " ", n, " ", j.k2000[2],
                    " ", string.format("%5.1f", 2.25),
                    " ", ("ab"):rep(3, "-"), " ", #t)
            -- the next run's budget starts from a heap without garbage
            t, h, j = nil, nil, nil
            collectgarbage("collect")
        }
    }
--- user_files
>>> sandbox/mix.lua
local t, h, f = {}, {}, {}
for i = 1, 300 do
    t[i] = tostring(i) .. "-" .. i
    h["key" .. i] = { i, t[i] }
    f[i] = function() return i end
end
local s = table.concat(t, ",")
local g = s:gsub("(%d+)-", "%1+")
local r = ("ab"):rep(500, ",")
local e = json.encode(h)
-- decode reserves 65 bytes per byte of text up front (lib.lua): a small one
local j = json.decode(json.encode({ key300 = h.key300 }))
local x = string.format("%s|%d|%s", g:sub(1, 20), #r, j.key300[2])
local y = ""
for i = 1, 50 do y = y .. i end
table.sort(t)
ngx.say(#s, " ", #g, " ", x, " ", #y, " ", f[300](), " ", t[1])
--- setup
my $want = "2183 2183 1+1,2+2,3+3,4+4,5+5,|1499|300-300 91 300 1-1\n";
my $trusted = qr/^(\d+) 10892 2000 2000 +2\.3 ab-ab-ab 2000\n\z/;
my (%pids, @errs, $ok, $refused);
for (my $m = 0; $m <= 400000; $m += 1499) {
    my $r = TestSandbox::get_ok("/sandbox/mix?m=$m");
    if ($r->{status} == 200) {
        push @errs, "m=$m: body '$r->{body}'" unless $r->{body} eq $want;
        $ok++;
    } elsif ($r->{status} == 503) {
        push @errs, "m=$m: body '$r->{body}'"
            unless $r->{body} =~ /"budget":"memory"/;
        $refused++;
    } else {
        push @errs, "m=$m: status $r->{status}";
    }
    my $c = TestSandbox::get_ok('/trusted');
    if ($c->{status} == 200 && $c->{body} =~ $trusted) {
        $pids{$1}++;
    } else {
        push @errs, "m=$m: trusted route: $c->{status} '$c->{body}'";
    }
}
# the budgets must have stepped through the whole run, not past it
push @errs, "only $refused runs refused" unless $refused >= 20;
push @errs, "only $ok runs passed" unless $ok >= 20;
Test::More::note("$refused runs refused, $ok passed");
push @errs, "the worker changed: " . join(' ', sort keys %pids)
    if keys %pids > 1;
TestGateway::verdict('refusals at every allocation', \@errs);
--- request
GET /sandbox/hello
--- response_body
hello xxx 5



=== TEST 2: json.decode under the memory budget leaks nothing outside the heap
lua-cjson mallocs a buffer the size of the text while it decodes and
frees it when it returns; a refusal inside it would unwind past the free,
900 KB a request here.  30 such requests leave the worker's RSS where it
was (in a checked run: no leak reported).
--- config
    location ~ ^/sandbox/(.+)$ {
        route_guard $1;
        route_guard_root html/sandbox;
        content_by_lua_block {
            require("gateway.sandbox").serve{ time = 2 * $TEST_NGINX_SLOWDOWN }
        }
    }

    location = /pid {
        content_by_lua_block { ngx.say(ngx.worker.pid()) }
    }
--- user_files
>>> sandbox/decode.lua
local v, err = json.decode("[" .. ("{},"):rep(3e5) .. "{}]")
ngx.say(v and #v or err)
--- setup
my @errs;
my $pid = TestSandbox::get_ok('/pid')->{body};
chomp $pid;
my ($before, $after);
for my $i (1 .. 35) {
    my $r = TestSandbox::get_ok('/sandbox/decode');
    push @errs, "request $i: $r->{status} '$r->{body}'"
        unless $r->{status} == 503 && $r->{body} =~ /"budget":"memory"/;
    $before = TestGateway::Util::rss_kib($pid) if $i == 5;
}
$after = TestGateway::Util::rss_kib($pid);
Test::More::note("worker RSS $before KiB after 5 requests, $after KiB after 35");
# under valgrind or a sanitizer the RSS is theirs; their leak check at
# the worker's exit is the check there
push @errs, "the worker's RSS grew by " . ($after - $before) . " KiB"
    if $after - $before > 4096 && !TestGateway::Util::checked();
my $now = TestSandbox::get_ok('/pid')->{body};
chomp $now;
push @errs, "the worker changed: $pid, then $now" unless $now eq $pid;
TestGateway::verdict('no leak when json.decode meets the budget', \@errs);
--- request
GET /pid
--- response_body_like
^\d+$
