# The watchdog (gateway/watchdog/, gateway/lib/gateway/watchdog.lua): a
# worker whose event loop has not turned for longer than the limit is
# killed by the privileged agent and replaced by the master.  The gateway
# as shipped (gateway.conf, the agent), 2 workers, a limit of 2 s:
#
#   - a trusted route in `while true do end`, and one inside a C call
#     that never returns (a backtracking string.find), each stuck worker
#     replaced within limit + 2 s while the other worker keeps serving;
#     both at once, one on each worker; after them every worker serves;
#   - one log line per stuck worker, naming the route; the count in
#     /metrics (gateway_worker_stuck_total) and /status;
#   - wrk for 10 s of short requests: no worker killed;
#   - the agent killed with -9 while a worker is stuck: the new agent
#     finds it;
#   - a reload (HUP) while a worker is stuck: the old generation goes,
#     the stuck worker is killed once; `gatewayctl stop` (QUIT, as `make
#     stop`) while a worker is stuck ends within limit + 2 s.

use strict;
use warnings;

use Cwd qw(realpath);
use File::Basename qw(dirname);
use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(sleep time);

use lib dirname(realpath(__FILE__));
use ShippedGateway;
use TestGateway::Util qw(slow);

my $port = $ENV{TEST_NGINX_WATCHDOG_PORT}
           || ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 4;

# seconds: the configuration says 2, which ShippedGateway scales
my $Limit = slow(2);
my $Within = $Limit + slow(2);      # a stuck worker is replaced by then

my $Worker = 'nginx: worker process';
my $Agent  = 'nginx: privileged agent process';

my $gw = ShippedGateway->new(base => servroot('watchdog'), port => $port,
                             workers => 2, nginx_conf => watchdog_conf());

write_file("$gw->{routes}/pid.lua", "ngx.say(ngx.worker.pid())\n");
write_file("$gw->{routes}/hello.lua", "ngx.say('hello')\n");
write_file("$gw->{routes}/spin.lua", "while true do end\n");
# LuaJIT's matcher backtracks through every way of splitting 40 bytes
# among 20 lazy items: one C call that does not return for years
write_file("$gw->{routes}/cfind.lua",
           "local s = ('a'):rep(40)\n"
           . "ngx.say(s:find(('a-'):rep(20) .. 'b'))\n");

$gw->start;
my $master = $gw->master;
ok(wait_until(10, sub { workers() == 2 && agents() == 1 }),
   '2 workers and the agent run') or BAIL_OUT('not started');

my ($got, $body) = $gw->get('/lua/hello');
is("$got $body", '200 hello', 'GET /lua/hello');

my $stuck_lines = 0;        # the watchdog's lines so far


# --- 1. a Lua loop, then a C call: the worker replaced, the other
# serving meanwhile ---

for my $route (qw(spin cfind)) {
    my ($conn, $from, $t0, @before) = stick($route, 0.5);
    my @ok = grep { join(' ', $gw->get('/lua/hello')) eq '200 hello' } 1 .. 5;
    is(scalar @ok, 5, "$route: the other worker answers meanwhile");

    my ($pid) = wait_kill($from, 1);
    my $took = time - $t0;
    ok($pid && grep({ $_ == $pid } @before),
       "$route: the watchdog names one of the workers")
        or diag($gw->read_log($from));
    ok(wait_until($Within - $took, sub { !alive($pid) && workers() == 2 }),
       "$route: killed and replaced within limit + 2 s")
        or diag(sprintf('%.1f s; workers %s', time - $t0, "@{[workers()]}"));
    like($gw->read_log($from),
         qr/gateway\ watchdog:\ worker\ process\ $pid\ has\ not\ returned
            \ to\ its\ event\ loop\ for\ \d+\ ms\ \(since\ [\d\/\ :]+\),
            \ in\ route\ "$route"\ \(location\ "\/lua\/",\ its\ last
            \ request,\ started\ [\d.]+\ s\ ago\):\ killed/x,
         "$route: the line names the worker, since when, the route");
    close $conn;
    $stuck_lines++;
}


# --- 2. both at once, one on each worker; then every worker serves ---

{
    # the first worker is stuck before the second request comes, so that
    # the other one takes it
    my ($spin, $from, $t0, @before) = stick('spin', 0.5);
    my $cfind = stuck_request('cfind');

    my @pids = wait_kill($from, 2);
    is(join(' ', sort @pids), join(' ', sort @before),
       'both workers named by the watchdog')
        or diag($gw->read_log($from));
    ok(wait_until($Within + 0.5 - (time - $t0),
                  sub { !grep({ alive($_) } @pids) && workers() == 2 }),
       'both killed and replaced within limit + 2 s')
        or diag(sprintf('%.1f s', time - $t0));
    my $log = $gw->read_log($from);
    like($log, qr/route "spin"/, 'one line names spin');
    like($log, qr/route "cfind"/, 'one line names cfind');
    close $_ for $spin, $cfind;
    $stuck_lines += 2;

    my %served;
    wait_until(10, sub {
        my ($code, $pid) = $gw->get('/lua/pid');
        $served{$pid} = 1 if $code == 200;
        keys %served == 2;
    });
    is(join(' ', sort keys %served), join(' ', sort(workers())),
       'afterwards both new workers serve');
}

is(stuck_count(), $stuck_lines, 'one watchdog line per stuck worker');
ok(wait_until(5, sub { metric() == $stuck_lines }),
   "/metrics: gateway_worker_stuck_total $stuck_lines")
    or diag('got ' . metric());
my $s = $gw->status;
is($s->{worker_stuck}, $stuck_lines, "/status: worker_stuck $stuck_lines");
my $last = $s->{agent}{last_stuck} // {};
ok($last->{pid} && $last->{location} eq '/lua/' && $last->{stuck} >= $Limit
   && $last->{killed_at}, '/status: agent.last_stuck describes the last')
    or diag(explain($last));


# --- 3. heavy load: many short requests are never stuck ---

SKIP: {
    skip 'wrk is not installed', 3 unless `which wrk` =~ /\S/;
    my @before = workers();
    my $from = $gw->log_size;
    my $out = `wrk -t2 -c64 -d10s http://127.0.0.1:$port/lua/hello 2>&1`;
    my ($n) = $out =~ /(\d+) requests in/;
    ok($n && $n > 1000, "wrk: $n requests in 10 s") or diag($out);
    is(join(' ', workers()), join(' ', @before), 'the same workers after');
    is(stuck_count($from), 0, 'no watchdog line');
}


# --- 4. the agent killed with -9 while a worker is stuck ---

{
    my ($agent) = agents();
    my ($conn, $from, $t0, @before) = stick('spin', 0.3);
    kill KILL => $agent;

    my ($pid) = wait_kill($from, 1);
    ok($pid && grep({ $_ == $pid } @before) && !grep({ $_ == $agent }
                                                     agents()),
       'a new agent finds the stuck worker')
        or diag($gw->read_log($from));
    ok(wait_until($Within + 1 - (time - $t0),
                  sub { !alive($pid) && workers() == 2 }),
       'killed and replaced within limit + 3 s (the agent respawned)')
        or diag(sprintf('%.1f s', time - $t0));
    close $conn;
    $stuck_lines++;
    ok(wait_until(5, sub { metric() == $stuck_lines }),
       "the new agent counts it: $stuck_lines");
}


# --- 5. a reload while a worker is stuck ---

{
    my ($conn, $from, $t0, @before) = stick('spin', 0.3);
    kill HUP => $master;

    my ($pid) = wait_kill($from, 1);
    ok($pid && grep({ $_ == $pid } @before), 'the stuck worker is named')
        or diag($gw->read_log($from));
    ok(wait_until($Within + 1 - (time - $t0), sub {
           !grep({ alive($_) } @before) && workers() == 2
               && agents() == 1
       }), 'the old generation is gone within limit + 3 s, a new one runs')
        or diag(`ps -ef --forest | grep [n]ginx`);
    close $conn;
    $stuck_lines++;
    sleep 0.5;
    is(stuck_count($from), 1, 'the stuck worker is logged once');
    ($got, $body) = $gw->get('/lua/hello');
    is("$got $body", '200 hello', 'the new generation serves');
}


# --- the log, and 6. stop while a worker is stuck ---

my $all = $gw->read_log(0);
my @bad = grep { !/worker process \d+ exited on signal 9/
                 && !/privileged agent process \d+ exited on signal 9/ }
          $all =~ /^(.*\[(?:alert|crit|emerg)\].*)$/mg;
is_deeply(\@bad, [], 'no alert, crit or emerg but the kills');
is(stuck_count(), $stuck_lines, "$stuck_lines watchdog lines in all");

{
    my %procs = map { $_ => 1 } $master, children($master);
    my ($conn, $from) = stick('spin', 0.5);
    my $t0 = time;
    my ($rc, $out) = $gw->gatewayctl('stop');
    my $took = time - $t0;
    is($rc, 0, 'gatewayctl stop') or diag($out);
    ok($took <= $Within, sprintf('stop took %.1f s (limit + 2 s: %d)',
                                 $took, $Within));
    ok(!grep({ alive($_) } keys %procs), 'no process left');
    is(stuck_count($from), 1, 'the stuck worker is logged once');
    close $conn;
}

$gw->reports_ok if TestChecked::checked();

done_testing();


# --- helpers ---

sub watchdog_conf {
    return <<"_EOC_";
worker_processes  \@WORKERS\@;
error_log  logs/error.log;
pid        logs/nginx.pid;

events {
    worker_connections  1024;
}

http {
    include  gateway.conf;

    gateway_watchdog  2s;

    server {
        listen  127.0.0.1:\@PORT\@;
        default_type  text/plain;
        route_guard_root  \@ROUTES\@;
        access_log  off;

        location /lua/ {
            route_guard  \$lua_route;
            content_by_lua_block  { require("gateway.router").serve() }
        }
    }

    server {
        listen  127.0.0.1:\@STATUS_PORT\@;

        location = /status {
            content_by_lua_block  { require("gateway.status").serve() }
        }

        location = /metrics {
            content_by_lua_block  { require("gateway.metrics").serve() }
        }
    }
}
_EOC_
}

sub workers { children($master, $Worker) }
sub agents  { children($master, $Agent) }

# a request for a route that never ends, on a connection left open
sub stuck_request {
    my ($route) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port")
        or die "connect: $!\n";
    print $s "GET /lua/$route HTTP/1.0\r\nHost: localhost\r\n\r\n";
    return $s;
}

# a stuck request for $route, $pause s to take hold: its connection, the
# log's size and the time before it, and the workers before it
sub stick {
    my ($route, $pause) = @_;
    my @before = workers();
    my ($from, $t0) = ($gw->log_size, time);
    my $conn = stuck_request($route);
    sleep $pause;
    return ($conn, $from, $t0, @before);
}

# the pids of the first $n watchdog lines after $from, waiting for them
# up to the limit + 2 s
sub wait_kill {
    my ($from, $n) = @_;
    my @pids;
    wait_until($Within + 1, sub {
        @pids = $gw->read_log($from)
                =~ /gateway watchdog: worker process (\d+) has not/g;
        @pids >= $n;
    });
    return @pids;
}

sub stuck_count {
    my @l = $gw->read_log($_[0] // 0) =~ /gateway watchdog: worker process/g;
    return scalar @l;
}

sub metric {
    return eval { $gw->metrics->{gateway_worker_stuck_total} } // -1;
}
