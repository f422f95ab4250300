# Hot reload of routes through gateway.router: with lua_code_cache on,
# every request runs the newest version of its script, compiled once per
# version; a script created, replaced (rename or in-place rewrite) or
# deleted is seen by the very next request on any worker; a replacement
# that does not compile leaves the last good version serving, is logged
# once per bad version and worker, and shows in GET /status; a brand-new
# route that does not compile answers a generic JSON 500 (route_error).
#
# The loops run in --- setup, every request on a new connection (the
# harness sends "Connection: close"), so with two workers they spread
# over both; X-Worker ($pid) tells which worker answered.  A loop
# collects every response that does not match the state just written and
# dies with the first ones at the end, so it counts as one failed check
# (the harness plans its checks from the sections, not from the setup).

use FindBin;
use lib $FindBin::Bin;
use TestGateway;
use TestRuntime;
use JSON::PP ();

my $files = <<'_EOF_';
>>> routes/hello.lua
ngx.say("hello")
>>> lib/.keep
_EOF_

runtime_blocks($files);


# --- helpers for the setup code (package main) ---

# one request on a new connection: status, body, version, worker
# the words a generic error page must not leak
our $Leak = qr{lua|routes/|servroot|unexpected|near '|expected|<eof>}i;

run_tests();

__DATA__

=== TEST 1: replace by rename, then request: always the version just written (1000 cycles, 2 workers)
--- workers: 2
--- setup
my (%seen, @errs);
for my $i (1 .. 1000) {
    replace_file('routes/hot.lua', "ngx.say($i)\n");
    my $r = get('/lua/hot');
    $seen{$r->{worker}}++;
    expect(\@errs, "cycle $i", $r, 200, "$i\n");
}
verdict('rename-replace loop', \@errs);
both_workers('rename-replace loop', \%seen);
--- timeout: 10
--- request
GET /lua/hot
--- response_body
1000
--- no_error_log
[error]
[warn]


=== TEST 2: in-place rewrite, same length and different length (200 cycles each, 2 workers)
--- workers: 2
--- setup
my (%seen, @errs);
for my $i (1 .. 200) {
    # "same %04d": every version has the same size as the one before
    my $want = sprintf "same %04d", $i;
    rewrite_file('routes/hot.lua', qq{ngx.say("$want")\n});
    my $r = get('/lua/hot');
    $seen{$r->{worker}}++;
    expect(\@errs, "same-length cycle $i", $r, 200, "$want\n");
}
for my $i (1 .. 200) {
    # the size alternates, so it differs from the version before
    my $want = sprintf "var %04d%s", $i, 'x' x ($i % 2 ? 1 : 7);
    rewrite_file('routes/hot.lua', qq{ngx.say("$want")\n});
    my $r = get('/lua/hot');
    $seen{$r->{worker}}++;
    expect(\@errs, "different-length cycle $i", $r, 200, "$want\n");
}
verdict('in-place rewrite', \@errs);
both_workers('in-place rewrite', \%seen);
--- timeout: 10
--- request
GET /lua/hot
--- response_body
var 0200xxxxxxx
--- no_error_log
[error]


=== TEST 3: delete -> next request 404; re-create -> the new content (200 cycles, 2 workers)
--- workers: 2
--- setup
my (%seen, @errs);
for my $i (1 .. 200) {
    unlink 'routes/hello.lua' or die "unlink: $!";
    my $r = get('/lua/hello');
    $seen{$r->{worker}}++;
    expect(\@errs, "cycle $i after delete", $r, 404);
    push @errs, "cycle $i after delete: the old output leaked: " . show($r)
        if $r->{body} =~ /^hello/;

    write_file('routes/hello.lua', "ngx.say('hello $i')\n");
    $r = get('/lua/hello');
    $seen{$r->{worker}}++;
    expect(\@errs, "cycle $i after re-create", $r, 200, "hello $i\n");
}
verdict('delete/re-create', \@errs);
both_workers('delete/re-create', \%seen);
--- timeout: 10
--- request
GET /lua/hello
--- response_body
hello 200
--- no_error_log
[error]


=== TEST 4: a broken replacement keeps the last good version serving, logged once per worker, in /status
--- workers: 2
--- init
write_file('routes/keep.lua', "ngx.say('v1')\n");
--- setup
my @errs;
my $seen = warm_both('/lua/keep', 200, "v1\n");
my $dnc = qr/gateway: route "keep" version \d+ does not compile: /;

# a syntax error
my $from = log_pos();
replace_file('routes/keep.lua', "ngx.say('v2')\nlocal = 2\n");
my %seen;
spread(\%seen, 100, 1000, sub {
    my $i = shift;
    my $r = get('/lua/keep');
    expect(\@errs, "syntax error, request $i", $r, 200, "v1\n");
    return $r->{worker};
});
both_workers('syntax error', \%seen);
push @errs, "new workers answered: " . join(' ', keys %seen)
    if grep { !$seen->{$_} } keys %seen;
my $n = count_lines($from, $dnc);
push @errs, "syntax error: want 1 or 2 'does not compile' lines (once"
            . " per worker), got $n"
    unless $n >= 1 && $n <= 2;
push @errs, "syntax error: the log line does not quote the Lua error"
    unless log_since($from) =~ /$dnc.*keep\.lua:2: .*expected near/;
push @errs, "syntax error: logged at another level than [error]"
    if grep { /$dnc/ && !/\[error\]/ } split /\n/, log_since($from);

my $report = status_report();
my $f = $report->{failed_routes}{keep};
if (!$f) {
    push @errs, "syntax error: /status has no failed_routes.keep: "
                . JSON::PP::encode_json($report);
} else {
    push @errs, "syntax error: /status failed_routes.keep.version is"
                . " '$f->{version}'"
        unless ($f->{version} // '') =~ /^\d+$/;
    push @errs, "syntax error: /status failed_routes.keep.error is"
                . " '$f->{error}'"
        unless ($f->{error} // '') =~ /keep\.lua:2: .*expected near/;
}

# a half-written file, as a writer without rename leaves it for a moment
$from = log_pos();
rewrite_file('routes/keep.lua', qq{ngx.say("x"});
for my $i (1 .. 100) {
    expect(\@errs, "half-written, request $i", get('/lua/keep'), 200,
           "v1\n");
}
$n = count_lines($from, $dnc);
push @errs, "half-written: want 1 or 2 'does not compile' lines, got $n"
    unless $n >= 1 && $n <= 2;
$f = status_report()->{failed_routes}{keep};
push @errs, "half-written: /status failed_routes.keep.error is '"
            . ($f ? $f->{error} : '(none)') . "'"
    unless $f && $f->{error} =~ /keep\.lua:1: .*expected near '<eof>'/;

# a good version again: served, and no longer listed as failed
$from = log_pos();
replace_file('routes/keep.lua', "ngx.say('v3')\n");
for my $i (1 .. 40) {
    expect(\@errs, "good v3, request $i", get('/lua/keep'), 200, "v3\n");
}
$n = count_lines($from, $dnc);
push @errs, "good v3: $n new 'does not compile' lines" if $n;
$report = status_report();
push @errs, "good v3: /status still lists keep: "
            . JSON::PP::encode_json($report)
    if $report->{failed_routes}{keep};
verdict('broken replacement', \@errs);
--- request
GET /lua/keep
--- response_body
v3
--- no_error_log
[warn]
does not compile


=== TEST 5: a brand-new route that does not compile answers a generic JSON 500
--- workers: 2
--- init
write_file('routes/bad.lua', "ngx.say('never'\nlocal = = 1\n");
--- setup
my (%seen, @errs);
my $from = log_pos();
spread(\%seen, 40, 1000, sub {
    my $i = shift;
    my $r = get('/lua/bad');
    expect(\@errs, "request $i", $r, 500);
    push @errs, "request $i: the body leaks internals: " . show($r)
        if $r->{body} =~ $main::Leak;
    return $r->{worker};
});
both_workers('brand-new broken route', \%seen);
my $n = count_lines($from, qr/gateway: route "bad" version \d+ does not compile/);
push @errs, "want 1 or 2 'does not compile' lines, got $n"
    unless $n >= 1 && $n <= 2;
my $report = status_report();
push @errs, "/status has no failed_routes.bad: "
            . JSON::PP::encode_json($report)
    unless $report->{failed_routes}{bad};
expect(\@errs, 'another route still works', get('/lua/hello'), 200,
       "hello\n");
verdict('brand-new broken route', \@errs);
--- request eval
["GET /lua/bad", "GET /lua/hello"]
--- error_code eval
[500, 200]
--- response_body_like eval
[qr/^\{"error":"route_error","message":"the route failed"\}$/, qr/^hello$/]
--- response_body_unlike eval
[$main::Leak, qr/never/]


=== TEST 6: nothing is compiled twice: unchanged route, unrelated changes, one real edit
--- workers: 1
--- setup
my @errs;
my $from = log_pos();
my $same = qr/gateway: compiled route "same" version \d+/;
my $compiles0 = status_report()->{compiles} // 0;

write_file('routes/same.lua', "ngx.say('same 1')\n");
for my $i (1 .. 200) {
    expect(\@errs, "unchanged, request $i", get('/lua/same'), 200,
           "same 1\n");
}
my $n = count_lines($from, $same);
push @errs, "unchanged: want 1 compilation of \"same\", got $n" if $n != 1;

# changes next to it, none to it: a new route, a new subdirectory with a
# route, a new module, an unrelated file replaced and deleted
write_file('routes/other.lua', "ngx.say('other')\n");
mkdir 'routes/sub' or die "mkdir: $!";
chmod 0755, 'routes/sub';
write_file('routes/sub/deep.lua', "ngx.say('deep')\n");
write_file('lib/unrelated.lua', "return {}\n");
replace_file('routes/hello.lua', "ngx.say('hello 2')\n");
unlink 'routes/other.lua' or die "unlink: $!";
for my $i (1 .. 50) {
    expect(\@errs, "after unrelated changes, request $i", get('/lua/same'),
           200, "same 1\n");
    expect(\@errs, "deep, request $i", get('/lua/sub/deep'), 200, "deep\n")
        if $i <= 5;
}
$n = count_lines($from, $same);
push @errs, "unrelated changes: want 1 compilation of \"same\", got $n"
    if $n != 1;
$n = count_lines($from, qr/gateway: compiled route "sub\/deep" version/);
push @errs, "want 1 compilation of \"sub/deep\", got $n" if $n != 1;

# a real edit: exactly one more
replace_file('routes/same.lua', "ngx.say('same 2')\n");
for my $i (1 .. 100) {
    expect(\@errs, "after the edit, request $i", get('/lua/same'), 200,
           "same 2\n");
}
$n = count_lines($from, $same);
push @errs, "after one edit: want 2 compilations of \"same\", got $n"
    if $n != 2;

# the status counter agrees: same twice, sub/deep once
my $compiles = (status_report()->{compiles} // 0) - $compiles0;
push @errs, "/status compiles grew by $compiles, want 3"
    unless $compiles == 3;
verdict('compiled once', \@errs);
--- request
GET /lua/same
--- response_body
same 2
--- no_error_log eval
[qr/compiled route "same"/, "[error]"]


=== TEST 7: a runtime error in a route: 500, the next request is fine, the worker lives on
--- workers: 1
--- init
write_file('routes/boom.lua', qq{error("boom")\n});
--- setup
my (%seen, @errs);
for my $i (1 .. 50) {
    my $r = get('/lua/boom');
    $seen{$r->{worker}}++;
    expect(\@errs, "boom $i", $r, 500);
    push @errs, "boom $i: the body leaks the error: " . show($r)
        if $r->{body} =~ /boom|$main::Leak/;
    $r = get('/lua/hello');
    $seen{$r->{worker}}++;
    expect(\@errs, "hello after boom $i", $r, 200, "hello\n");
}
push @errs, "the worker changed: " . join(' ', keys %seen)
    if keys %seen != 1;
verdict('runtime error', \@errs);
--- request eval
["GET /lua/boom", "GET /lua/hello"]
--- error_code eval
[500, 200]
--- response_body_unlike eval
[qr/boom/, qr/boom/]
--- error_log eval
qr/\[error\].*boom/


=== TEST 8: a worker that never ran the good version falls back to it too (shared last good source)
--- workers: 2
--- init
write_file('routes/once.lua', "ngx.say('good')\n");
--- setup
my (%seen, @errs);
# one request: one worker compiled the good version, the other did not
expect(\@errs, 'the only good request', get('/lua/once'), 200, "good\n");
replace_file('routes/once.lua', "ngx.say('bad'\n");
spread(\%seen, 100, 1000, sub {
    my $i = shift;
    my $r = get('/lua/once');
    expect(\@errs, "broken, request $i", $r, 200, "good\n");
    return $r->{worker};
});
both_workers('fallback', \%seen);
verdict('fallback in a worker that never ran the good version', \@errs);
--- request
GET /lua/once
--- response_body
good


=== TEST 9: deleted routes' chunks are freed (the sweep, every second here)
--- workers: 1
--- http_config
    route_guard_modules $TEST_NGINX_HTML_DIR/lib;
    lua_shared_dict gateway_status 1m;
    lua_shared_dict gateway_scripts 8m;
    init_by_lua_block {
        require("gateway.router").init{ modules = "$TEST_NGINX_HTML_DIR/lib",
                                        sweep_interval = 1 }
    }
    init_worker_by_lua_block { require("gateway.router").init_worker() }
--- config
    location ~ ^/lua/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        add_header X-Worker $pid always;
        content_by_lua_block { require("gateway.router").serve() }
    }

    location = /heap {
        content_by_lua_block {
            collectgarbage()
            collectgarbage()
            ngx.say(math.floor(collectgarbage("count")))
        }
    }
--- setup
my @errs;
sub heap_kb {
    my $r = get('/heap');
    die "GET /heap: " . show($r) . "\n" unless $r->{status} == 200;
    return $r->{body} + 0;
}
for (1 .. 20) { get('/lua/hello') }
my $h0 = heap_kb();

# 400 routes of some 250 distinct strings each, every one compiled once
for my $i (1 .. 400) {
    my $strings = join ",\n", map { qq{"route $i string $_ padding"} } 1 .. 250;
    write_file("routes/many/r$i.lua",
               "local t = {\n$strings\n}\nngx.say(#t)\n");
    expect(\@errs, "route $i", get("/lua/many/r$i"), 200, "250\n");
}
my $h1 = heap_kb();
push @errs, "the chunks did not show in the heap: $h0 KB -> $h1 KB"
    unless $h1 - $h0 > 2000;

system('rm', '-rf', 'routes/many') == 0 or die "rm -rf routes/many failed";
expect(\@errs, "deleted route", get('/lua/many/r1'), 404);
Time::HiRes::sleep(2.5);
my $h2 = heap_kb();
push @errs, "after deleting the routes the heap is $h2 KB (from $h0 KB,"
            . " $h1 KB with the routes): their chunks were not freed"
    unless $h2 - $h0 < ($h1 - $h0) / 4;
Test::More::diag("heap: $h0 KB, $h1 KB with 400 routes, $h2 KB after"
                 . " deleting them") if $ENV{TEST_VERBOSE};
verdict('freeing deleted routes', \@errs);
--- timeout: 10
--- request
GET /lua/hello
--- response_body
hello


=== TEST 10: a script removed or made unreadable after the guard's check: 404 / 503, the worker lives on
--- workers: 1
--- config
    # the file changes between the guard's check (precontent) and the
    # router's load (content), in the request itself: ?do=remove deletes
    # it, ?do=lock puts a file the worker cannot read in its place
    location ~ ^/window/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        add_header X-Worker $pid always;
        content_by_lua_block {
            local script = ngx.var.route_script
            if ngx.var.arg_do == "remove" then
                assert(os.remove(script))
            else
                assert(os.rename(script:gsub("[^/]+$", "locked.tmp"), script))
            end
            require("gateway.router").serve()
        }
    }

    location ~ ^/lua/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        add_header X-Worker $pid always;
        content_by_lua_block { require("gateway.router").serve() }
    }
--- init
# the worker (nobody) may remove and rename in routes/, not read locked.tmp
chmod 0777, 'routes' or die "chmod: $!";
--- setup
my (%seen, @errs);
for my $i (1 .. 20) {
    write_file('routes/gone.lua', "ngx.say('gone $i')\n");
    write_file('routes/shut.lua', "ngx.say('shut $i')\n");
    write_file('routes/locked.tmp', "ngx.say('locked $i')\n");
    chmod 0600, 'routes/locked.tmp';

    # every other time, with a version compiled before: the new one goes,
    # and the old one must not answer for it
    if ($i % 2) {
        expect(\@errs, "gone $i, before", get('/lua/gone'), 200, "gone $i\n");
        expect(\@errs, "shut $i, before", get('/lua/shut'), 200, "shut $i\n");
        write_file('routes/gone.lua', "ngx.say('gone $i, new')\n");
        write_file('routes/shut.lua', "ngx.say('shut $i, new')\n");
    }

    my $r = get('/window/gone?do=remove');
    $seen{$r->{worker}}++;
    expect(\@errs, "removed $i", $r, 404);
    push @errs, "removed $i: not the JSON route_not_found: " . show($r)
        unless $r->{body} =~ /^\{"error":"route_not_found",/;
    expect(\@errs, "removed $i, next request", get('/lua/gone'), 404);

    $r = get('/window/shut?do=lock');
    $seen{$r->{worker}}++;
    expect(\@errs, "locked $i", $r, 503);
    push @errs, "locked $i: not the JSON route_unavailable: " . show($r)
        unless $r->{body} =~ /^\{"error":"route_unavailable",/;
    push @errs, "locked $i: leaks: " . show($r) if $r->{body} =~ $main::Leak;
    expect(\@errs, "locked $i, next request", get('/lua/shut'), 503);

    $r = get('/lua/hello');
    $seen{$r->{worker}}++;
    expect(\@errs, "hello after $i", $r, 200, "hello\n");
}
push @errs, "the worker changed: " . join(' ', keys %seen)
    if keys %seen != 1;
verdict('file gone between check and load', \@errs);
--- request
GET /lua/hello
--- response_body
hello
--- no_error_log
does not compile
[alert]
