# Sandbox attacks that once took a worker down for hours: LuaJIT's
# backtracking pattern matcher, its sort and big C-side allocations run
# in C, where the count hook cannot stop them.  Every pattern call,
# sort and allocation must now end within the script's budgets, with
# the 503 naming the budget, and leave both workers serving.
#
# Two workers.  An attack block's --- setup calls bounded(), which:
#
#   - finds the two worker pids (new connections to /pid until both
#     answered, bounded in attempts and time);
#   - asks /pid, the attack, /pid, each on a new connection, and checks
#     the attack's status and body (503 and the budget's JSON error), the
#     worker that served it (X-Pid, one of the two) and its wall time (at
#     most the location's time budget + 0.5 s, times TEST_NGINX_SLOWDOWN);
#     with per_worker => 1 it repeats the attack until it has hit each of
#     the two workers;
#   - then asks /sandbox/hello and /trusted (trusted Lua that allocates
#     and matches patterns) on new connections until each worker answered
#     both, and finds the two workers again: the same two pids, so the
#     worker that took the attack is the one that answers after it.
#
# Locations (budgets): /sandbox/ as shipped, time 1 s; /mem/ with an
# instruction budget of 1e9 and 2 s, so that the memory budget (8 MB, as
# shipped) is the one to run out (8 MB of small strings takes some
# 0.3 s, and twice that on a busy machine: the allocator has the heap
# collected each time it grew by half of what is left); /big/ with 64 MB
# of memory; /timed/ (0.5 s) and /fast/ (0.2 s) with no instruction
# budget to speak of, where only the clock stops a script.  Times scale
# with TEST_NGINX_SLOWDOWN.
#
# The block's own request (t/TestSandbox.pm) is GET /sandbox/hello.

use FindBin;
use lib $FindBin::Bin;
use TestGateway;
use TestSandbox;

use Time::HiRes qw(time);

workers(2);

# the time budget of each location, in seconds before TEST_NGINX_SLOWDOWN
my %TimeBudget = (sandbox => 1, mem => 2, big => 1, timed => 0.5,
                  fast => 0.2);

my $Slowdown = '$TEST_NGINX_SLOWDOWN';

$TestSandbox::config = join '',
    TestSandbox::location('sandbox', "time = $Slowdown"),
    TestSandbox::location('mem', "instructions = 1e9,"
                                 . " time = 2 * $Slowdown"),
    TestSandbox::location('big', "memory = 64 * 1024 * 1024,"
                                 . " time = $Slowdown"),
    TestSandbox::location('timed', "instructions = 1e12,"
                                   . " time = 0.5 * $Slowdown"),
    TestSandbox::location('fast', "instructions = 1e12,"
                                  . " time = 0.2 * $Slowdown"),
    <<'_EOC_';
    location = /pid {
        add_header X-Pid $pid always;
        return 200 "$pid";
    }

    location = /trusted {
        add_header X-Pid $pid always;
        content_by_lua_block {
            local t = {}
            for i = 1, 1000 do t[i] = ("x"):rep(100) .. i end
            local s = table.concat(t)
            local _, n = s:gsub("x+", "")
            local i, j = string.find(("a"):rep(40), ("a?"):rep(20))
            ngx.say(#s, " ", s:find("x1000", 1, true), " ", n, " ", i,
                    " ", j)
        }
    }

    location = /trusted-names {
        content_by_lua_block {
            ngx.say(tostring({}), " ", string.format("%p", {}))
        }
    }
_EOC_

my $Hello = "hello xxx 5\n";
my $Trusted = "102893 102889 1000 1 20\n";


# one GET on a new connection; dies when there is no complete answer
sub get {
    my ($path, $timeout) = @_;
    my $r = http_request("GET $path", $timeout || 5);
    die "GET $path: $r->{error}\n" if $r->{error};
    return $r;
}

# the two worker pids, from new connections to /pid
sub worker_pids {
    my $what = shift;
    my %seen;
    my $deadline = time + TestChecked::slow(5);
    for my $i (1 .. 200) {
        my $r = get('/pid');
        die "$what: GET /pid: $r->{status}\n" unless $r->{status} == 200;
        $seen{ $r->{body} } = 1;
        last if keys %seen >= 2 || time > $deadline;
    }
    both_workers("$what: /pid", \%seen);
    die "$what: more than two workers: @{[ sort keys %seen ]}\n"
        if keys %seen > 2;
    return %seen;
}

# $path must answer 200 $want on each of %$workers (X-Pid), and only there
sub on_both {
    my ($errs, $path, $want, $workers) = @_;
    my %ok;
    my $deadline = time + TestChecked::slow(5);
    for my $i (1 .. 200) {
        my $r = get($path);
        my $w = $r->{headers}{'x-pid'} // '?';
        unless ($r->{status} == 200 && $r->{body} eq $want) {
            push @$errs, "after the attack, $path on $w: $r->{status} '"
                         . TestGateway::printable($r->{body}) . "'";
            return;
        }
        unless ($workers->{$w}) {
            push @$errs, "after the attack, $path answered by a new"
                         . " worker $w";
            return;
        }
        $ok{$w} = 1;
        last if keys %ok == 2 || time > $deadline;
    }
    push @$errs, "after the attack, only worker(s) @{[ keys %ok ]}"
                 . " answered $path" if keys %ok < 2;
}

# the attack (see the top of the file); %opt: per_worker => 1, or
# also => [status, body]: another answer that is right too
sub bounded {
    my ($path, $kind, %opt) = @_;
    my ($loc) = $path =~ m{^/(\w+)/} or die "bad path $path\n";
    my $budget = $TimeBudget{$loc} // die "no time budget for $path\n";
    my $limit = TestChecked::slow($budget + 0.5);
    my $want = TestSandbox::error_body($kind);
    my $status = $kind eq 'error' ? 500 : 503;

    my %workers = worker_pids('before the attack');
    my (@errs, %hit);

    for my $round (1 .. ($opt{per_worker} ? 30 : 1)) {
        my $before = get('/pid')->{body};
        my $t0 = time;
        # long enough to see how long a runaway attack takes, bounded
        my $r = http_request("GET $path", $budget + 2);
        my $took = time - $t0;
        die "$path (round $round): $r->{error} after "
            . sprintf('%.2f', $took) . "s\n" if $r->{error};
        my $after = get('/pid')->{body};
        my $w = $r->{headers}{'x-pid'} // '?';
        my $ctx = "$path (round $round, worker $w)";
        Test::More::note(sprintf "%s: %s in %.3fs", $ctx, $r->{status},
                         $took);

        my $right = $r->{status} == $status && $r->{body} eq $want;
        $right ||= $r->{status} == $opt{also}[0]
                   && $r->{body} eq $opt{also}[1] if $opt{also};
        push @errs, "$ctx: want $status '" . TestGateway::printable($want)
                    . "', got $r->{status} '"
                    . TestGateway::printable($r->{body}) . "'"
            unless $right;
        push @errs, "$ctx: took " . sprintf('%.3f', $took)
                    . "s, more than ${limit}s" if $took > $limit;
        push @errs, "$ctx: served by a worker that is not one of"
                    . " @{[ sort keys %workers ]}" unless $workers{$w};
        push @errs, "$ctx: /pid before and after answered by new"
                    . " workers: $before, $after"
            unless $workers{$before} && $workers{$after};

        $hit{$w} = 1;
        last if @errs || keys %hit == 2;
    }
    push @errs, "$path: the attacks reached only worker(s)"
                . " @{[ keys %hit ]}" if $opt{per_worker} && keys %hit < 2;

    unless (@errs) {
        on_both(\@errs, '/sandbox/hello', $Hello, \%workers);
        on_both(\@errs, '/trusted', $Trusted, \%workers);
        my %now = worker_pids('after the attack');
        push @errs, "the workers changed: @{[ sort keys %workers ]},"
                    . " then @{[ sort keys %now ]}"
            unless join(' ', sort keys %workers) eq join(' ', sort keys %now);
    }

    verdict("attack $path", \@errs);
}

run_tests();

__DATA__

=== TEST 1: instruction budget: the issue's find (n = 40), on each worker
--- attack: instruction
--- user_files
>>> sandbox/a.lua
local n = 40 ngx.say(string.find(string.rep("a", n), string.rep("a?", n) .. string.rep("a", n)))
--- setup
bounded('/sandbox/a', 'instruction', per_worker => 1)



=== TEST 2: instruction budget: the issue's gsub (n = 50), on each worker
--- attack: instruction
--- user_files
>>> sandbox/a.lua
string.gsub(("a"):rep(50), ("a?"):rep(50) .. ("a"):rep(50), "x")
--- setup
bounded('/sandbox/a', 'instruction', per_worker => 1)



=== TEST 3: time budget: the issue's find with no instruction budget, stopped by the clock inside the matcher
--- attack: time
--- user_files
>>> sandbox/a.lua
local n = 40 ngx.say(string.find(string.rep("a", n), string.rep("a?", n) .. string.rep("a", n)))
--- setup
bounded('/timed/a', 'time', per_worker => 1)



=== TEST 4: instruction budget: a lazy chain (.-)x5 b over 5000 a's
--- attack: instruction
--- user_files
>>> sandbox/a.lua
string.find(("a"):rep(5000), "(.-)(.-)(.-)(.-)(.-)b")
--- setup
bounded('/sandbox/a', 'instruction')



=== TEST 5: instruction budget: the lazy chain anchored
--- attack: instruction
--- user_files
>>> sandbox/a.lua
string.match(("a"):rep(5000), "^(.-)(.-)(.-)(.-)(.-)b")
--- setup
bounded('/sandbox/a', 'instruction')



=== TEST 6: instruction budget: %b() over deeply nested parentheses
--- attack: instruction
--- user_files
>>> sandbox/a.lua
local s = ("("):rep(100000) .. (")"):rep(100000)
string.find(s, "%b()x")
--- setup
bounded('/sandbox/a', 'instruction')



=== TEST 7: instruction budget: %b() over unbalanced input
--- attack: instruction
--- user_files
>>> sandbox/a.lua
string.find(("("):rep(200000), "%b()")
--- setup
bounded('/sandbox/a', 'instruction')



=== TEST 8: instruction budget: %f[%w] frontiers with lazy quantifiers
--- attack: instruction
--- user_files
>>> sandbox/a.lua
string.find(("a "):rep(3000), ("%f[%w].-"):rep(4) .. "x")
--- setup
bounded('/sandbox/a', 'instruction')



=== TEST 9: instruction budget: back references, (a*)%1 chained
--- attack: instruction
--- user_files
>>> sandbox/a.lua
string.find(("a"):rep(5000), "(a*)%1(a*)%2(a*)%3b")
--- setup
bounded('/sandbox/a', 'instruction')



=== TEST 10: instruction budget: match anchored, 30 captures (a?)
--- attack: instruction
--- user_files
>>> sandbox/a.lua
ngx.say(string.match(("a"):rep(30), "^" .. ("(a?)"):rep(30) .. ("a"):rep(30)))
--- setup
bounded('/sandbox/a', 'instruction')



=== TEST 11: instruction budget: match as a method call
--- attack: instruction
--- user_files
>>> sandbox/a.lua
local s = ("a"):rep(40)
ngx.say(s:match("^" .. ("a?"):rep(40) .. ("a"):rep(40) .. "$"))
--- setup
bounded('/sandbox/a', 'instruction')



=== TEST 12: instruction budget: find as a method call, with init
--- attack: instruction
--- user_files
>>> sandbox/a.lua
local s = ("a"):rep(5000)
s:find("(.-)(.-)(.-)(.-)b", 2)
--- setup
bounded('/sandbox/a', 'instruction')



=== TEST 13: instruction budget: gsub with a function replacement
--- attack: instruction
--- user_files
>>> sandbox/a.lua
local s = ("a"):rep(5000)
s:gsub("(.-)(.-)(.-)(.-)b", function() return "x" end)
--- setup
bounded('/sandbox/a', 'instruction')



=== TEST 14: instruction budget: gsub with a table replacement
--- attack: instruction
--- user_files
>>> sandbox/a.lua
(("a"):rep(40)):gsub(("a?"):rep(40) .. ("a"):rep(40), {})
--- setup
bounded('/sandbox/a', 'instruction')



=== TEST 15: instruction budget: gmatch retrying at every start position
--- attack: instruction
--- user_files
>>> sandbox/a.lua
local s = ("a"):rep(100000)
for x in s:gmatch("a-b") do end
--- setup
bounded('/sandbox/a', 'instruction')



=== TEST 16: instruction budget: a gmatch iterator resumed 500000 times
--- attack: instruction
--- user_files
>>> sandbox/a.lua
local s = ("ab"):rep(500000)
local it = s:gmatch("a")
while it() do end
--- setup
bounded('/sandbox/a', 'instruction')



=== TEST 17: instruction budget: a plain find is not quadratic
A linear search answers "nil" at once; a counted one may run out of
instructions instead.  Either is right, a 2e6 x 2e6 byte comparison is
not (64 MB of memory, so that the strings fit).
--- attack: instruction
--- user_files
>>> sandbox/a.lua
ngx.say(string.find(("a"):rep(4e6), ("a"):rep(2e6) .. "b", 1, true))
--- setup
bounded('/big/a', 'instruction', also => [200, "nil\n"])



=== TEST 18: instruction budget: table.sort of a big table in a loop
--- attack: instruction
--- user_files
>>> sandbox/a.lua
local t = {}
for i = 1, 100000 do t[i] = -i end
while true do table.sort(t) end
--- setup
bounded('/sandbox/a', 'instruction')



=== TEST 19: instruction budget: table.sort with a comparator in a loop
--- attack: instruction
--- user_files
>>> sandbox/a.lua
local t = {}
for i = 1, 100000 do t[i] = i end
local up = true
while true do
    table.sort(t, function(a, b) if up then return a < b end return a > b end)
    up = not up
end
--- setup
bounded('/sandbox/a', 'instruction')



=== TEST 20: instruction budget: a comparator calling gsub with a pathological pattern
--- attack: instruction
--- user_files
>>> sandbox/a.lua
local s = ("a"):rep(40)
local p = ("a?"):rep(40) .. ("a"):rep(40)
table.sort({ 3, 1, 2, 5, 4 }, function(a, b)
    s:gsub(p, "")
    return a < b
end)
--- setup
bounded('/sandbox/a', 'instruction')



=== TEST 21: time budget: string.rep and .. in a loop under 0.2 s
--- attack: time
--- user_files
>>> sandbox/a.lua
while true do local s = ("x"):rep(100000) .. ("y"):rep(100000) end
--- setup
bounded('/fast/a', 'time')



=== TEST 22: memory budget: many small interned strings
--- attack: memory
--- user_files
>>> sandbox/a.lua
local t = {}
for i = 1, 1e8 do t[i] = tostring(i) end
--- setup
bounded('/mem/a', 'memory')



=== TEST 23: memory budget: growth of a table's array part
--- attack: memory
--- user_files
>>> sandbox/a.lua
local t = {}
for i = 1, 1e8 do t[i] = i end
--- setup
bounded('/mem/a', 'memory')



=== TEST 24: memory budget: growth of a table's hash part
--- attack: memory
--- user_files
>>> sandbox/a.lua
local t = {}
for i = 1, 1e8 do t[-i] = true end
--- setup
bounded('/mem/a', 'memory')



=== TEST 25: memory budget: .. of a big string
--- attack: memory
--- user_files
>>> sandbox/a.lua
local s = ("x"):rep(3e6)
local r = s .. s .. s
--- setup
bounded('/sandbox/a', 'memory')



=== TEST 26: memory budget: string.rep as a function
--- attack: memory
--- user_files
>>> sandbox/a.lua
local s = string.rep("x", 1e8)
--- setup
bounded('/sandbox/a', 'memory')



=== TEST 27: memory budget: string.rep as a method
--- attack: memory
--- user_files
>>> sandbox/a.lua
local s = ("xy"):rep(5e7)
--- setup
bounded('/sandbox/a', 'memory')



=== TEST 28: memory budget: string.format with big arguments
--- attack: memory
--- user_files
>>> sandbox/a.lua
local s = ("x"):rep(2e6)
local r = string.format("%s%s%s%s", s, s, s, s)
--- setup
bounded('/sandbox/a', 'memory')



=== TEST 29: memory budget: table.concat
--- attack: memory
--- user_files
>>> sandbox/a.lua
local s = ("x"):rep(1e6)
local t = {}
for i = 1, 10 do t[i] = s end
local r = table.concat(t)
--- setup
bounded('/sandbox/a', 'memory')



=== TEST 30: memory budget: json.decode of a big array text
--- attack: memory
--- user_files
>>> sandbox/a.lua
local v = json.decode("[" .. ("{},"):rep(3e5) .. "{}]")
--- setup
bounded('/mem/a', 'memory')



=== TEST 31: memory budget: gsub whose result grows
--- attack: memory
--- user_files
>>> sandbox/a.lua
local r = (("a"):rep(1e6)):gsub("a", ("b"):rep(12))
--- setup
bounded('/mem/a', 'memory')



=== TEST 32: garbage is not counted: 40 MB of strings under 8 MB
--- user_files
>>> sandbox/g.lua
local n = 0
for i = 1, 10000 do local s = ("x"):rep(4000) .. i; n = n + #s end
ngx.say(n)
--- request
GET /mem/g
--- response_body
40038894



=== TEST 33: garbage is not counted: 200000 tables under 8 MB
--- user_files
>>> sandbox/g.lua
local n = 0
for i = 1, 200000 do local t = { i, i, i, i, i, i, i, i }; n = n + #t end
ngx.say(n)
--- request
GET /mem/g
--- response_body
1600000



=== TEST 34: no address leaks: tostring and %s/%p give per-request names
tostring() of tables, functions (a Lua one, wrapped and plain C ones) and
userdata (cjson's null) and string.format's %s and %p: no "0x", no long
hex; the same object keeps its name, different ones differ; a second
request gets the very same text (the names restart); trusted code still
sees addresses.
--- user_files
>>> sandbox/names.lua
local t, u = {}, {}
local f = function() end
local null = json.decode("null")
ngx.say("t ", tostring(t))
ngx.say("t ", tostring(t))
ngx.say("u ", tostring(u))
ngx.say("f ", tostring(f))
ngx.say("find ", tostring(string.find))
ngx.say("say ", tostring(ngx.say))
ngx.say("next ", tostring(next))
ngx.say("string ", tostring(string))
ngx.say("null ", tostring(null))
ngx.say("fmt ", string.format("%s|%p", t, t))
ngx.say("fmt ", ("%s|%p"):format(t, t))
ngx.say("fmtu ", string.format("%s|%p", u, u))
ngx.say("fmtf ", string.format("%s|%p", f, f))
ngx.say("fmtnull ", string.format("%s|%p", null, null))
ngx.say("concat ", table.concat({ tostring(t), tostring(f) }, ","))
ngx.say("t ", tostring(t))
--- setup
my @errs;
my $first = get('/sandbox/names');
my $second = get('/sandbox/names');
for my $r ($first, $second) {
    die "GET /sandbox/names: $r->{status} '"
        . TestGateway::printable($r->{body}) . "'\n"
        unless $r->{status} == 200;
}
my $body = $first->{body};
push @errs, "an address in the body: '" . TestGateway::printable($body) . "'"
    if $body =~ /0x|[0-9a-f]{8,}/i;
push @errs, "a second request got other names: '"
            . TestGateway::printable($body) . "', then '"
            . TestGateway::printable($second->{body}) . "'"
    unless $second->{body} eq $body;

my (%v, @t);
for (split /\n/, $body) {
    my ($k, $v) = /^(\w+) (.*)$/ or next;
    if ($k eq 't') { push @t, $v } else { push @{ $v{$k} }, $v }
}
my %type = (u => 'table', f => 'function', find => 'function',
            say => 'function', next => 'function', string => 'table',
            null => 'userdata');
push @errs, "t is '$t[0]', want 'table: <n>'" unless $t[0] =~ /^table: \d+$/;
push @errs, "t has more than one name: @t" if grep { $_ ne $t[0] } @t;
for my $k (sort keys %type) {
    my $v = $v{$k}[0] // '';
    push @errs, "$k is '$v', want '$type{$k}: <n>'"
        unless $v =~ /^$type{$k}: \d+$/;
}
my %names;
for my $k ('u', 'f', 'find', 'say', 'next', 'string', 'null') {
    my $v = $v{$k}[0] // next;
    push @errs, "$k has the name of $names{$v}: $v" if $names{$v};
    $names{$v} = $k;
}
push @errs, "u has the name of t" if ($v{u}[0] // '') eq $t[0];
my ($s1, $p1) = split /\|/, $v{fmt}[0] // '';
my ($s2, $p2) = split /\|/, $v{fmt}[1] // '';
push @errs, "%s of t is '$s1', tostring gives '$t[0]'" if $s1 ne $t[0];
push @errs, "%s of t as a method is '$s2'" if $s2 ne $t[0];
push @errs, "%p of the same t: '$p1', then '$p2'" if $p1 ne $p2;
for my $k ('fmtu', 'fmtf', 'fmtnull') {
    my ($s, $p) = split /\|/, $v{$k}[0] // '';
    my $of = { fmtu => 'u', fmtf => 'f', fmtnull => 'null' }->{$k};
    push @errs, "$k: %s is '$s', tostring gives '$v{$of}[0]'"
        if $s ne ($v{$of}[0] // '');
    push @errs, "$k: %p is '$p', the same as t's" if $p eq $p1;
    push @errs, "$k: %p is empty" if $p eq '';
}
push @errs, "concat is '$v{concat}[0]'"
    if ($v{concat}[0] // '') ne "$t[0],$v{f}[0]";

my $trusted = get('/trusted-names')->{body};
push @errs, "trusted code: '$trusted', want 'table: 0x... 0x...'"
    unless $trusted =~ /^table: 0x[0-9a-f]+ 0x[0-9a-f]+$/;
verdict('names', \@errs);
--- request
GET /sandbox/names
--- response_body_unlike: 0x|[0-9a-fA-F]{8,}



=== TEST 35: error: an error message with names in it is not shown
--- attack: error
--- user_files
>>> sandbox/a.lua
error(tostring({}) .. " " .. tostring(string.find) .. " " .. string.format("%p", {}))
--- setup
bounded('/sandbox/a', 'error')



=== TEST 36: time budget: big string work between two hooks, no allocation
Interned strings: after the first round neither `..` nor `<` allocates
(the result is found in the string table), so no collection moves the
hook forward; each instruction compares or hashes 1 MB, and only the
hook every 1,000 instructions reads the clock.  The model's worst case:
it must still stop at about the time budget.
--- attack: time
--- user_files
>>> sandbox/a.lua
local a = ("x"):rep(5e5) .. "a"
local b = ("x"):rep(5e5) .. "b"
while true do
    local c = a .. b
    local lt = a < b
end
--- setup
bounded('/timed/a', 'time')
