# The gateway's privileged agent (gateway/lib/gateway/agent.lua) as
# shipped: conf/gateway.conf, which enables it, started by
# gateway/bin/gatewayctl with its own copy of the configuration sources
# (CONF=), which the agent watches.  A valid edit goes live by itself
# (rendered, "nginx -t", HUP), a broken one is refused once and the old
# configuration keeps serving, a burst of writes is one reload, and the
# agent comes back after kill -9.
#
# The nginx.conf of the copy is this file's own (agent_conf() below)
# around `include gateway.conf;`: one public server whose /agent-check
# location the edits change, and the status server.  It logs at "notice"
# (the shipped one logs at "error"), so that the agent's "reloading
# nginx" lines and the master's SIGHUP lines can be counted.

use strict;
use warnings;

use Cwd qw(realpath);
use File::Basename qw(dirname);
use Test::More;
use POSIX ();
use Time::HiRes qw(sleep time);

use lib dirname(realpath(__FILE__));
use ShippedGateway;
use TestGateway::Util qw(listening_of);

my $top  = realpath(dirname(realpath(__FILE__)) . '/..');
my $port = $ENV{TEST_NGINX_AGENT_PORT} || 1990;

my $Agent  = 'nginx: privileged agent process';
my $Worker = 'nginx: worker process';

my $gw = ShippedGateway->new(base => servroot('agent'), port => $port,
                             nginx_conf => agent_conf());
my $prefix = $gw->{prefix};

write_file("$gw->{routes}/hello.lua", "ngx.say(\"hello\")\n");

my %seen;    # every nginx process seen, for the final check

my ($rc, $out) = $gw->gatewayctl('start');
is($rc, 0, 'gatewayctl start') or diag($out);
my $master = $gw->master;
BAIL_OUT("no master: $out") unless $master;


# --- 1. the agent: a child of the master, root, no listening socket ---

my $agent = wait_agent($master, 10);
ok($agent, 'an agent runs beside the workers') or BAIL_OUT('no agent');

is(ids_of($master, 'Uid'), '0 0 0 0', 'the master runs as root');
is(ids_of($agent, 'Uid'), ids_of($master, 'Uid'),
   "the agent has the master's uid");
is(ids_of($agent, 'Gid'), ids_of($master, 'Gid'),
   "the agent has the master's gid");

my $nobody = getpwnam('nobody') // -1;
my @workers = workers($master);
ok(@workers >= 1, 'workers run') or diag(`ps -ef --forest`);
for my $w (@workers) {
    is(ids_of($w, 'Uid'), join(' ', ($nobody) x 4), "worker $w runs as nobody");
    ok(scalar listening_of($w), "worker $w holds the listening sockets");
}
is_deeply([listening_of($agent)], [], 'the agent holds no listening socket');

ok(wait_until(5, sub { defined $gw->status->{agent}{alive_at} }),
   'the agent reports itself alive in /status');

my ($got, $body) = $gw->get('/lua/hello');
is("$got $body", '200 hello', 'GET /lua/hello');
($got) = $gw->get('/agent-check');
is($got, 404, 'no /agent-check before the edit');


# --- 2. a valid edit goes live by itself ---

my $from = $gw->log_size;
my @before = workers($master);
set_check('v2');

ok(wait_until(10, sub { join(' ', $gw->get('/agent-check')) eq '200 v2' }),
   'a valid edit is live within 10 s: /agent-check answers v2')
    or diag($gw->read_log($from));
is($gw->master, $master, 'the master is the same');
ok(wait_until(10, sub { new_generation($master, @before) }),
   'the workers were replaced')
    or diag("before @before, now @{[workers($master)]}");
my $s = $gw->status;
ok($s->{agent}{last_test} && $s->{agent}{last_test}{ok},
   '/status: agent.last_test.ok is true') or diag(explain($s));
ok($s->{agent}{last_reload_at}, '/status: agent.last_reload_at is set');
unlike($gw->read_log($from), qr/is refused/, 'nothing refused');
$agent = wait_agent($master, 5);
ok($agent, 'a new agent after the reload');


# --- 3. a broken edit is refused, the old configuration keeps serving ---

$from = $gw->log_size;
@before = workers($master);
my $agent_before = $agent;
my $t0 = time;
set_check('v2', 'bogus_directive on;');

ok(wait_until(10, sub {
       my $t = $gw->status->{agent}{last_test};
       $t && !$t->{ok};
   }), '/status: agent.last_test.ok turns false');
sleep 3 - (time - $t0) if time - $t0 < 3;

($got, $body) = $gw->get('/lua/hello');
is("$got $body", '200 hello', 'the old configuration still serves /lua/hello');
($got, $body) = $gw->get('/agent-check');
is("$got $body", '200 v2', 'and /agent-check as before');
$s = $gw->status->{agent};
is(ref $s->{last_test} && $s->{last_test}{ok} ? 1 : 0, 0,
   '/status: agent.last_test.ok is false');
like($s->{last_test}{output} // '', qr/bogus_directive/,
     '/status: agent.last_test.output names the bad directive');
unlike(slurp("$prefix/conf/nginx.conf"), qr/bogus_directive/,
       'the installed configuration is untouched');
is(refused($from), 1, 'the error log says "is refused" once')
    or diag($gw->read_log($from));
like($gw->read_log($from), qr/is refused.*bogus_directive/s,
     'the refusal names the bad directive');

# the same broken file written again: the same failure, not logged again
set_check('v2', 'bogus_directive on;');
sleep 2;
is(refused($from), 1, 'a second write of the same broken file: still once');
is($gw->master, $master, 'the master is the same');
is(join(' ', workers($master)), join(' ', @before), 'the workers are the same');
is(reloads($from), 0, 'no reload was asked for');
ok(alive($agent_before), 'the agent is the same');

# fixed: live again
set_check('v3');
ok(wait_until(10, sub { join(' ', $gw->get('/agent-check')) eq '200 v3' }),
   'the fixed file goes live: /agent-check answers v3')
    or diag($gw->read_log($from));
ok($gw->status->{agent}{last_test}{ok},
   '/status: agent.last_test.ok is true again');
ok(wait_until(10, sub { new_generation($master, @before) }),
   'the workers were replaced');


# --- 4. a burst of 20 writes is one reload ---

# settled: no worker shutting down, and none just forked (which still
# bears the master's title)
wait_until(10, sub { !grep { title_of($_) =~ /shutting down/
                             || title_of($_) !~ /worker|agent/ }
                     child_pids($master) });
$from = $gw->log_size;
@before = workers($master);
my %gen_pids;
my $reload_at = $gw->status->{agent}{last_reload_at};
my $burst = time;
# nothing else in the loop: on a busy machine a scan of /proc per write
# stretched the burst past the agent's quiet period (a second reload then
# is right, and the SIGHUP count below would say so)
for my $i (1 .. 20) {
    set_check("v4-$i");
    sleep 0.045;
}
$burst = time - $burst;
ok($burst < 1.5, sprintf('20 writes in %.2f s', $burst));
ok(wait_until(10, sub {
       $gen_pids{$_} = 1 for workers($master);
       join(' ', $gw->get('/agent-check')) eq '200 v4-20';
   }), 'the last write is live: /agent-check answers v4-20');
# any late second reload would come 0.5-0.7 s after the first
my $until = time + 2;
while (time < $until) {
    $gen_pids{$_} = 1 for workers($master);
    sleep 0.05;
}
my %old = map { $_ => 1 } @before;
my $new_pids = grep { !$old{$_} } keys %gen_pids;
is($new_pids, scalar @before, 'one new generation of workers')
    or diag("before: @before; seen: @{[sort keys %gen_pids]}");
is(reloads($from), 1, 'the agent logs "reloading nginx" once')
    or diag($gw->read_log($from));
my @hup = $gw->read_log($from) =~ /signal 1 \(SIGHUP\) received/g;
is(scalar @hup, 1, 'the master got one SIGHUP');
isnt($gw->status->{agent}{last_reload_at}, $reload_at,
     '/status: agent.last_reload_at moved');


# --- 5. kill -9 of the agent: a new one, which still reloads ---

$agent = wait_agent($master, 5) or BAIL_OUT('no agent before kill -9');
my $killed = time;
kill KILL => $agent;
my $respawned = wait_agent($master, 5, $agent);
ok($respawned, 'a new agent within 5 s after kill -9')
    or diag(`ps -ef --forest`);
ok(!alive($agent), 'the killed agent is gone');
is(ids_of($respawned // 0, 'Uid'), ids_of($master, 'Uid'),
   "the new agent has the master's uid");
is_deeply([listening_of($respawned // 0)], [],
          'the new agent holds no listening socket');
ok(wait_until(5, sub { ($gw->status->{agent}{alive_at} // 0) > $killed }),
   'the new agent reports itself alive');

$from = $gw->log_size;
set_check('v5');
ok(wait_until(10, sub { join(' ', $gw->get('/agent-check')) eq '200 v5' }),
   'the new agent reloads a later edit: /agent-check answers v5')
    or diag($gw->read_log($from));
is($gw->master, $master, 'the master is the same');


# --- 6. an `nginx -t` that hangs: killed at the deadline, the agent
# goes on meanwhile and leaves no child behind ---

# nginx -t blocks opening a FIFO without a writer
my $fifo = "$prefix/hang.fifo";
POSIX::mkfifo($fifo, 0600) or die "mkfifo $fifo: $!\n";
$agent = wait_agent($master, 5) or BAIL_OUT('no agent before the hang');
$from = $gw->log_size;
my $hang_at = time;
set_check('v6', "include $fifo;");
ok(wait_until(10, sub { agent_children($agent) }),
   'the agent runs nginx -t, which hangs on the FIFO');
my $alive_at = $gw->status->{agent}{alive_at} // 0;
ok(wait_until(5, sub { ($gw->status->{agent}{alive_at} // 0) > $alive_at + 1 }),
   "the agent's loop turns while its nginx -t hangs");
ok(wait_until(45, sub {
       my $t = $gw->status->{agent}{last_test};
       $t && !$t->{ok} && ($t->{at} // 0) > $hang_at;
   }), 'the hanging test ends as a refusal');
like($gw->status->{agent}{last_test}{output} // '',
     qr/did not finish within 30 s and was killed/,
     '/status: agent.last_test.output says it was killed at the deadline');
ok(wait_until(3, sub { !agent_children($agent) }),
   'no child of the agent is left, running or as a zombie')
    or diag("children: @{[agent_children($agent)]}");
ok(alive($agent), 'the agent is the same');
($got, $body) = $gw->get('/agent-check');
is("$got $body", '200 v5', 'the old configuration still serves');

set_check('v7');
ok(wait_until(10, sub { join(' ', $gw->get('/agent-check')) eq '200 v7' }),
   'the next edit goes live: /agent-check answers v7')
    or diag($gw->read_log($from));


# --- the log, and 7. stop ---

# The agent's "nginx -t" of the broken file runs with the instance's
# prefix, so its [emerg] about next/conf/nginx.conf lands in this log too.
my $all = $gw->read_log(0);
my @bad = grep { !/privileged agent process \d+ exited on signal 9/
                 && !m{\[emerg\] .*bogus_directive.* in \Q$prefix\E/next/} }
          $all =~ /^(.*\[(?:alert|crit|emerg)\].*)$/mg;
is_deeply(\@bad, [],
          'no alert, crit or emerg but the kill -9 and the refused test');

$seen{$_} = 1 for $master, child_pids($master);
($rc, $out) = $gw->gatewayctl('stop');
is($rc, 0, 'gatewayctl stop') or diag($out);
ok(wait_until(10, sub { !grep { alive($_) } keys %seen }),
   'no process left after stop')
    or diag('left: ' . join(' ', grep { alive($_) } keys %seen));

# at the end: processes report as they exit
$gw->reports_ok if TestChecked::checked();

done_testing();


# --- helpers ---

# The nginx.conf of the instance: the shipped runtime (gateway.conf, with
# the agent) and @lines in the public server; rendered by render-conf.
sub agent_conf {
    my $lines = join '', map { "        $_\n" } @_;
    return <<"_EOC_";
worker_processes  \@WORKERS\@;
error_log  logs/error.log notice;
pid        logs/nginx.pid;

events {
    worker_connections  1024;
}

http {
    include  gateway.conf;

    server {
        listen  127.0.0.1:\@PORT\@;
        default_type  text/plain;
        route_guard_root  \@ROUTES\@;

        location /lua/ {
            route_guard  \$lua_route;
            content_by_lua_block  { require("gateway.router").serve() }
        }

$lines    }

    server {
        listen  127.0.0.1:\@STATUS_PORT\@;

        location = /status {
            content_by_lua_block  { require("gateway.status").serve() }
        }
    }
}
_EOC_
}

# the public server's /agent-check location, and extra lines after it;
# written in place as an editor would
sub set_check {
    my ($body, @extra) = @_;
    $gw->set_conf(agent_conf(
        "location = /agent-check { return 200 \"$body\\n\"; }", @extra));
}

sub refused {
    my @l = $gw->read_log($_[0]) =~ /the new configuration is refused/g;
    return scalar @l;
}

sub reloads {
    my @l = $gw->read_log($_[0])
            =~ /configuration changed and tested, reloading nginx/g;
    return scalar @l;
}

# the agent's child processes (zombies too)
sub agent_children {
    my $pid = shift;
    return split ' ', slurp("/proc/$pid/task/$pid/children") // '';
}

# the master's children, remembered for the final check
sub child_pids {
    my @kids = children($_[0]);
    $seen{$_} = 1 for @kids;
    return @kids;
}

# "real effective saved fs" of Uid: or Gid: in /proc/<pid>/status
sub ids_of {
    my ($pid, $what) = @_;
    return slurp("/proc/$pid/status") =~
           /^$what:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m ? "$1 $2 $3 $4" : '?';
}

# the master's workers that are not shutting down
sub workers {
    return grep { title_of($_) eq $Worker } child_pids($_[0]);
}

sub new_generation {
    my ($master, @old) = @_;
    my %old = map { $_ => 1 } @old;
    my @now = workers($master);
    return @now && !grep { $old{$_} } @now;
}

# waits up to $secs for exactly one agent (none of @not) beside the
# workers; returns it
sub wait_agent {
    my ($master, $secs, @not) = @_;
    my %not = map { $_ => 1 } @not;
    my $agent;
    wait_until($secs, sub {
        my @a = grep { title_of($_) eq $Agent } child_pids($master);
        $agent = @a == 1 && !$not{$a[0]} && workers($master) ? $a[0]
                                                            : undef;
    });
    return $agent;
}
