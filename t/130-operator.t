# The operator's view of the shipped gateway: GET /metrics counts a known
# mix of requests exactly, across workers and worker restarts; GET /status
# shows every route's file and the version each worker runs; errors are
# short JSON documents; clients can neither reach the status listener nor
# choose metric labels.

use strict;
use warnings;

use Cwd qw(realpath);
use File::Basename qw(dirname);
use Digest::SHA qw(sha1_hex);
use Test::More;

use lib dirname(realpath(__FILE__));
use ShippedGateway;

my $top  = realpath(dirname(realpath(__FILE__)) . '/..');
my $port = $ENV{TEST_NGINX_OPERATOR_PORT} || 1994;
# the sandbox's time budget (1 s as shipped) scaled like every wait of a
# checked run: under valgrind the loop must still end on its instruction
# budget, as the counts below say
my $gw = ShippedGateway->new(
    base => servroot('operator'), port => $port, workers => 1,
    conf => sub {
        my $time = TestChecked::slow(1);
        $_[0] =~ s/(require\("gateway\.sandbox"\)\.serve)\(\)/$1\{ time = $time \}/
            or die "no gateway.sandbox serve() in conf/nginx.conf\n";
    });
my ($routes, $modules, $sandbox) = @$gw{qw(routes modules sandbox)};

my $hello = 'ngx.say("hello ", ngx.worker.pid())';
replace_file("$routes/hello.lua", $hello);
write_file("$routes/own404.lua", 'ngx.status = 404 ngx.say("no such thing")');
write_file("$routes/forbid.lua", 'return ngx.exit(403)');
write_file("$routes/boom.lua", 'error("kaboom at " .. ngx.var.uri)');
write_file("$routes/bad.lua", "ngx.say('never'\n");
write_file("$routes/mod.lua", 'ngx.say(require("shout").it("x"))');
write_file("$modules/shout.lua",
           'return { it = function(s) return s:upper() end }');
write_file("$routes/bc.lua", "\x1bLJ\x02 not really bytecode");
write_file("$routes/secret.lua", 'ngx.say("secret")');
chmod 0600, "$routes/secret.lua";
symlink '/etc/hostname', "$routes/esc.lua" or die "symlink: $!";
mkdir "$routes/dir.lua" or die "mkdir: $!";
write_file("$sandbox/hi.lua", 'ngx.say("hi")');
write_file("$sandbox/loop.lua", 'while true do end');

$gw->start;

# Leaks: a path, a file name, a Lua error
my $leak = qr{servroot|\.lua|kaboom|never|/etc/|stack traceback}i;

# ---------------------------------------------------------------------
# a known mix; each request: path, status, error code (undef: not JSON)

my @mix = (
    (['/lua/hello',          200]) x 5,
    (['/lua?route=hello',    200]) x 2,
    (['/lua/own404',         404]) x 3,
    (['/lua/forbid',         403, 'forbidden']) x 2,
    (['/lua/boom',           500, 'route_error']) x 2,
    (['/lua/bad',            500, 'route_error']) x 2,
    (['/lua/missing',        404, 'route_not_found']) x 4,
    ['/lua/a//b',            400, 'invalid_route_name'],
    ['/lua/hello.lua',       400, 'invalid_route_name'],
    ['/lua/-x',              400, 'invalid_route_name'],
    ['/lua?route=../x',      400, 'invalid_route_name'],
    ['/lua/',                400, 'invalid_route_name'],
    ['/lua/esc',             503, 'route_unavailable'],
    ['/lua/dir',             503, 'route_unavailable'],
    ['/lua/bc',              503, 'route_unavailable'],
    ['/lua/secret',          503, 'route_unavailable'],
    (['/sandbox/hi',         200]) x 3,
    (['/sandbox/loop',       503, 'budget_exceeded']) x 2,
    ['/sandbox/nope',        404, 'route_not_found'],
    ['/sandbox/a//b',        400, 'invalid_route_name'],
    ['/nothing/here',        404, 'not_found'],
);

for my $m (@mix) {
    my ($path, $status, $code) = @$m;
    my $r = $gw->request("GET $path HTTP/1.0\r\nHost: localhost\r\n\r\n");

    is($r->{status}, $status, "GET $path: $status");
    next unless $code;

    like($r->{body}, qr/^\{"error":"\Q$code\E","message":"[a-z ]+"(,"budget":"[a-z]+")?\}\n\z/,
         "GET $path: JSON error $code");
    is($r->{headers}{'content-type'}, 'application/json',
       "GET $path: application/json");
    unlike($r->{body}, $leak, "GET $path: no internals");
}

# nginx's own errors, and other methods
for my $c (["GARBAGE\r\n\r\n", 400, 'bad_request'],
           ["GET /lua/hello HTTP/1.0\r\nX: " . ('a' x 70000) . "\r\n\r\n",
            400, 'bad_request'],
           ["POST /lua/missing HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
            404, 'route_not_found'])
{
    my ($raw, $status, $code) = @$c;
    my $r = $gw->request($raw);
    (my $line = substr($raw, 0, 40)) =~ s/\r\n.*//s;
    is($r->{status}, $status, "$line: $status");
    like($r->{body}, qr/^\{"error":"$code",/, "$line: JSON $code");
}
my $head = $gw->request("HEAD /lua/missing HTTP/1.0\r\n\r\n");
is($head->{status}, 404, 'HEAD of a missing route: 404');
is($head->{body}, '', 'HEAD: no body');

my %want = (
    'gateway_requests_total{tree="routes",route="hello",class="2xx"}' => 7,
    'gateway_requests_total{tree="routes",route="own404",class="4xx"}' => 3,
    'gateway_requests_total{tree="routes",route="forbid",class="4xx"}' => 2,
    'gateway_requests_total{tree="routes",route="boom",class="5xx"}' => 2,
    'gateway_requests_total{tree="routes",route="bad",class="5xx"}' => 2,
    'gateway_requests_total{tree="sandbox",route="hi",class="2xx"}' => 3,
    'gateway_requests_total{tree="sandbox",route="loop",class="5xx"}' => 2,
    rejections('routes', missing => 6, grammar => 5, symlink_escape => 1,
               not_regular => 1, bytecode => 1, unreadable => 1),
    rejections('sandbox', missing => 1, grammar => 1),
    'gateway_compiles_total' => 6,          # one worker, one version each
    'gateway_compile_failures_total' => 1,  # bad, once: not per request
    'gateway_worker_stuck_total' => 0,      # the watchdog: t/140
    reloads(route => 0, module => 0, config => 0),
    budgets(instruction => 2),
);

my $scrape = $gw->request("GET /metrics HTTP/1.0\r\n\r\n",
                          $gw->{status_port});
is($scrape->{headers}{'content-type'},
   'text/plain; version=0.0.4; charset=utf-8', '/metrics: Prometheus text');
my $m = counters_are(\%want, 'the mix');
histograms_ok($m, 'the mix');

# ---------------------------------------------------------------------
# /status: each route's file, and what the worker runs

my $s = $gw->status;
my ($worker) = $gw->workers;
my $h = $s->{routes}{routes}{hello};

ok($h, '/status lists hello') or diag explain $s;
is($h->{size}, length $hello, 'hello: size');
is($h->{sha1}, sha1_hex($hello), 'hello: content hash');
ok(abs($h->{mtime} - (stat "$routes/hello.lua")[9]) < 1, 'hello: mtime');
is_deeply([keys %{ $h->{workers} }], [$worker], 'hello: one worker');
like($h->{workers}{$worker}{version}, qr/^\d+$/, 'hello: its version');
is($h->{workers}{$worker}{serving_sha1}, sha1_hex($hello),
   'hello: the worker runs the file as it is');

is_deeply([sort keys %{ $s->{routes}{routes} }],
          [qw(bad boom forbid hello own404)],
          '/status lists the routes compiled, and only them');
is_deeply([sort keys %{ $s->{routes}{sandbox} }], [qw(hi loop)],
          '/status lists the sandboxed routes compiled');
like($s->{failed_routes}{bad}{error}, qr/expected/,
     'the route that does not compile, with its error');
is_deeply($s->{routes}{sandbox}{loop}{budget_hits}, { instruction => 2 },
          'budget hits of the route');
is_deeply($s->{sandbox_budget_hits}, { instruction => 2 },
          'budget hits of all routes');
ok(wait_until(5, sub { ($gw->status->{agent}{alive_at} // 0) > time - 5 }),
   'the agent is alive');

# ---------------------------------------------------------------------
# edits: a new version, a broken one, a module

replace_file("$routes/hello.lua",
             my $hello2 = 'ngx.say("v2 ", ngx.worker.pid())');
like(body('/lua/hello'), qr/^v2 /, 'the edit is served');
replace_file("$routes/hello.lua", my $broken = 'ngx.say(');
like(body('/lua/hello'), qr/^v2 /, 'a broken edit leaves v2 serving');
is(body('/lua/mod'), 'X', 'a route with a module');
replace_file("$modules/shout.lua",
             'return { it = function(s) return s:upper() .. "!" end }');
is(body('/lua/mod'), 'X!', 'the module edit is served');

$want{'gateway_requests_total{tree="routes",route="hello",class="2xx"}'} += 2;
$want{'gateway_requests_total{tree="routes",route="mod",class="2xx"}'} = 2;
$want{gateway_compiles_total} += 2;             # hello v2, mod
$want{gateway_compile_failures_total} += 1;     # hello v3
$want{'gateway_hot_reloads_total{kind="route"}'} = 1;
$want{'gateway_hot_reloads_total{kind="module"}'} = 1;
$m = counters_are(\%want, 'after the edits');

$h = $gw->status->{routes}{routes}{hello};
is($h->{sha1}, sha1_hex($broken), 'status: the file as it is now');
like($h->{error}, qr/expected/, 'status: its compile error');
is($h->{workers}{$worker}{serving_sha1}, sha1_hex($hello2),
   'status: the worker still runs v2');

# ---------------------------------------------------------------------
# a flood of names a client chose: counted, never labels

my $series = join "\n", sort keys %$m;
my $n = 0;
for my $i (1 .. 150) {
    $gw->get("/lua/flood$i");                   # valid, missing
    $gw->get("/lua/flood$i/..%2f$i");           # invalid
    $gw->get("/sandbox/x$i");                   # valid, missing
    $n++;
}
$want{'gateway_rejections_total{tree="routes",reason="missing"}'} += $n;
$want{'gateway_rejections_total{tree="routes",reason="grammar"}'} += $n;
$want{'gateway_rejections_total{tree="sandbox",reason="missing"}'} += $n;
$m = counters_are(\%want, 'after the flood');
is(join("\n", sort keys %$m), $series, 'the flood added no series');
unlike(body('/metrics', $gw->{status_port}), qr/flood|x150/,
       'no client name in /metrics');
unlike(body('/status', $gw->{status_port}), qr/flood|x150/,
       'no client name in /status');

# ---------------------------------------------------------------------
# the counters add up across workers and outlive them: the agent reloads
# nginx with two workers, one is killed, both serve

# the placeholder of the copy (WORKERS=1 for this instance) written as 2,
# everywhere, as render-conf replaces it
my $conf = $gw->{conf_text};
$conf =~ s/\@WORKERS\@/2/g or die "no \@WORKERS\@ in conf/nginx.conf\n";
$gw->set_conf($conf);
ok(wait_until(15, sub { my @w = $gw->workers;
                        @w == 2 && !grep { $_ == $worker } @w }),
   'the agent reloaded nginx with two workers');
$want{'gateway_hot_reloads_total{kind="config"}'} = 1;
counters_are(\%want, 'after the reload');

my ($victim) = $gw->workers;
kill 'KILL', $victim;
ok(wait_until(10, sub { my @w = $gw->workers;
                        @w == 2 && !grep { $_ == $victim } @w }),
   'the master replaced the killed worker');
counters_are(\%want, 'after a worker was killed');

replace_file("$routes/hello.lua", $hello);
my %pids;
my $sent = 0;
while (keys %pids < 2 && $sent < 400) {
    $sent++;
    $pids{$1}++ if body('/lua/hello') =~ /^hello (\d+)$/;
}
is(scalar keys %pids, 2, 'both workers served hello');
$want{'gateway_requests_total{tree="routes",route="hello",class="2xx"}'}
    += $sent;
$want{gateway_compiles_total} += 2;    # new workers: first compiles, not reloads
counters_are(\%want, 'requests served by two workers');
is_deeply([sort keys %{ $gw->status->{routes}{routes}{hello}{workers} }],
          [sort keys %pids], 'status: the version of each live worker');

# ---------------------------------------------------------------------
# a deleted route drops out

unlink "$routes/own404.lua" or die "unlink: $!";
delete $want{'gateway_requests_total{tree="routes",route="own404",class="4xx"}'};
$m = counters_are(\%want, 'after a route was deleted');
ok(!grep(/own404/, keys %$m), 'no series of the deleted route');
ok(!$gw->status->{routes}{routes}{own404}, 'nor in /status');

# ---------------------------------------------------------------------
# the status listener: loopback only, not on the public one

for my $raw ("GET /status HTTP/1.0\r\n\r\n",
             "GET /metrics HTTP/1.0\r\n\r\n",
             "GET /status HTTP/1.1\r\nHost: 127.0.0.1:" . $gw->{status_port}
             . "\r\nConnection: close\r\n\r\n",
             "GET http://127.0.0.1:" . $gw->{status_port}
             . "/metrics HTTP/1.1\r\nHost: localhost\r\n"
             . "Connection: close\r\n\r\n")
{
    my $r = $gw->request($raw);
    (my $line = $raw) =~ s/\r\n.*//s;
    is($r->{status}, 404, "public listener: $line is 404");
    unlike($r->{body}, qr/gateway_|routes/, "public listener: $line: "
                                            . "no report");
}
is_deeply([listen_addresses($gw->{status_port})], ['127.0.0.1'],
          'the status listener is bound to 127.0.0.1 only');

my @alerts = grep { /\[(alert|crit|emerg)\]/ && !/exited on signal 9/ }
             split /\n/, $gw->read_log;
is_deeply(\@alerts, [], 'no alert in the error log but the kill');

$gw->stop;
# at the end: processes report as they exit
$gw->reports_ok if TestChecked::checked();

done_testing();


# the body of GET $path, on the public port unless given
sub body {
    my ($path, $port) = @_;
    return ($gw->get($path, $port))[1];
}

sub rejections {
    my ($tree, %n) = @_;
    return map { ("gateway_rejections_total{tree=\"$tree\",reason=\"$_\"}"
                  => $n{$_} // 0) }
           qw(grammar missing not_regular unreadable symlink_escape
              bytecode mismatch error);
}

sub reloads {
    my (%n) = @_;
    return map { ("gateway_hot_reloads_total{kind=\"$_\"}" => $n{$_}) }
           keys %n;
}

sub budgets {
    my (%n) = @_;
    return map { ("gateway_sandbox_budget_hits_total{budget=\"$_\"}"
                  => $n{$_} // 0) }
           qw(instruction memory output time nesting);
}

# every counter as wanted, and no other counter (histograms apart); the
# scrape it judged returned. A request is counted in its log phase, which
# nginx runs after the response's last byte went out: another worker may be
# scraped first, so a short count is scraped again, for at most 3 s.
sub counters_are {
    my ($want, $when) = @_;
    my ($m, %got);
    wait_until(3, sub {
        $m = $gw->metrics;
        %got = map { $_ => $m->{$_} }
               grep { !/^gateway_request_duration_seconds/ } keys %$m;
        return !grep { ($got{$_} // 0) < $want->{$_} } keys %$want;
    });
    is_deeply(\%got, $want, "$when: every counter exact")
        or diag explain { got => \%got, want => $want };
    return $m;
}

# per route: cumulative buckets, +Inf = _count = the route's requests
sub histograms_ok {
    my ($m, $when) = @_;
    my %routes;

    for (keys %$m) {
        $routes{$1} += $m->{$_}
            if /^gateway_requests_total\{(tree="[a-z]+",route="[^"]+"),/;
    }

    for my $r (sort keys %routes) {
        my @le = sort { $a->[0] <=> $b->[0] }
                 map { /le="([^"]+)"/; [$1 eq '+Inf' ? 9**9**9 : $1,
                                        $m->{$_}] }
                 grep { /^gateway_request_duration_seconds_bucket\{\Q$r\E,/ }
                 keys %$m;
        my @counts = map { $_->[1] } @le;
        is(scalar @le, 18, "$when: $r has 18 buckets");
        is_deeply(\@counts, [sort { $a <=> $b } @counts],
                  "$when: $r buckets are cumulative");
        is($counts[-1], $routes{$r}, "$when: $r +Inf is its requests");
        is($m->{"gateway_request_duration_seconds_count{$r}"}, $routes{$r},
           "$when: $r _count");
        ok($m->{"gateway_request_duration_seconds_sum{$r}"} >= 0,
           "$when: $r _sum");
    }
}

# the local addresses listening on a TCP port, from /proc/net/tcp{,6}
sub listen_addresses {
    my ($port) = @_;
    my @a;

    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $f or next;
        while (<$fh>) {
            my ($addr, $p, $st) = /^\s*\d+: ([0-9A-F]+):([0-9A-F]{4}) \S+ ([0-9A-F]{2})/
                or next;
            next unless hex($p) == $port && $st eq '0A';   # LISTEN
            push @a, length $addr == 8
                ? join('.', reverse map { hex } unpack '(A2)4', $addr)
                : "ipv6:$addr";
        }
    }

    return @a;
}
