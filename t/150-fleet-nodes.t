# The fleet's nodes (gateway/lib/gateway/fleet.lua in each privileged
# agent) against a real 3-member etcd cluster (t/TestEtcd.pm) on loopback:
# three gateway nodes as shipped (t/ShippedGateway.pm), each with the
# cluster's three endpoints.  What a publisher writes with a plain put or
# a transaction reaches every node's trees, in an order that never shows a
# route without its module; what is refused is reported and never
# written; the nodes keep serving through etcd's failures and catch up
# after them.  Publishing here is the v3 API itself, as with etcdctl:
# that interface is the contract.

use strict;
use warnings;

use Cwd qw(realpath);
use File::Basename qw(dirname);
use Test::More;
use Time::HiRes qw(sleep time);

use lib dirname(realpath(__FILE__));
use ShippedGateway;
use TestEtcd;

my $base = $ENV{TEST_NGINX_NODES_PORT} || 2010;
my $fleet = 't';
my $prefix = "/gateway/$fleet/";

my $etcd = TestEtcd->start(members => 3, dir => servroot('fleet-etcd'),
                           port => $base + 100);

my @nodes;
for my $i (0 .. 2) {
    my $gw = ShippedGateway->new(base => servroot("fleet-node$i"),
        port => $base + 2 * $i, workers => 1,
        fleet => { ETCD => scalar $etcd->endpoints, FLEET => $fleet,
                   NODE => "node$i" });
    $gw->start;
    push @nodes, $gw;
}


# --- 1. a publish reaches every node; a delete leaves every node ---

my $rev = $etcd->put("${prefix}routes/hello.lua", 'ngx.say("hello v1")');
ok(all_serve('/lua/hello', '200 hello v1', 10),
   'a put: every node serves the route');
ok(wait_until(5, sub { !grep { ($_->status->{fleet}{revision} // 0) < $rev }
                       @nodes }),
   "every node's /status says it applied revision $rev");

$etcd->put("${prefix}routes/hello.lua", 'ngx.say("hello v2")');
ok(all_serve('/lua/hello', '200 hello v2', 5),
   'a second put: every node serves the new version');

$etcd->put("${prefix}routes/gone.lua", 'ngx.say("gone")');
ok(all_serve('/lua/gone', '200 gone', 5), 'another route');
$etcd->remove("${prefix}routes/gone.lua");
ok(all_serve('/lua/gone', '404', 5), 'its delete: every node answers 404');
ok(!-e "$nodes[0]{routes}/gone.lua", 'and its file is gone');


# --- 2. a route and its module in one transaction: never apart ---

txn(put => "lib/shared/ver.lua" => 'return { v = "m1" }',
    put => "routes/uses.lua" => 'ngx.say("r1 ", require("shared.ver").v)');
ok(all_serve('/lua/uses', '200 r1 m1', 10), 'route + module: served');

# clients poll every node while the next version of both is published
my %seen;
my $poll_until = time + 3;
my $published;
while (time < $poll_until) {
    if (!$published && time > $poll_until - 2.5) {
        txn(put => "lib/shared/ver.lua" => 'return { v = "m2" }',
            put => "routes/uses.lua"
                   => 'ngx.say("r2 ", require("shared.ver").v)');
        $published = 1;
    }
    for my $gw (@nodes) {
        my ($s, $b) = $gw->get('/lua/uses');
        $seen{"$s $b"}++;
    }
}
# the old route with the new module is the moment between the two
# writes (README.md, "Fleet"); the new route with the old one, never
is_deeply([sort grep { !/^200 (?:r1 m1|r1 m2|r2 m2)$/ } keys %seen], [],
          'during a route + module publish no node served the new route '
          . 'with the old module (or anything else)')
    or diag(explain(\%seen));
ok($seen{'200 r2 m2'}, 'the new route was served during the polling');
ok(all_serve('/lua/uses', '200 r2 m2', 5), 'and then every node the new');


# --- 3. refused: what does not compile, hostile names, huge values ---

$etcd->put("${prefix}routes/broken.lua", 'ngx.say("ok")');
ok(all_serve('/lua/broken', '200 ok', 5), 'a good version first');
$rev = $etcd->put("${prefix}routes/broken.lua", 'ngx.say("oops"');
ok(wait_until(5, sub { !grep { !fleet_error($_, 'routes/broken.lua') }
                       @nodes }),
   "a script that does not compile: every node reports it in /status");
my $err = fleet_error($nodes[0], 'routes/broken.lua') // {};
is($err->{revision}, $rev, '... with the revision');
is($err->{reason}, 'compile', '... and the reason');
ok(all_serve('/lua/broken', '200 ok', 2),
   'every node keeps serving the last good version');

my @hostile = (
    [ 'routes/../../../../tmp/fleet-escape.lua', 'name' ],
    [ 'routes/a b.lua', 'name' ],
    [ 'routes/-dash.lua', 'name' ],
    [ 'routes/.hidden.lua', 'name' ],
    [ 'routes/noext', 'name' ],
    [ 'other/x.lua', 'tree' ],     # between lib/ and sandbox/
    [ 'routes/huge.lua', 'size', '-- ' . ('x' x (1024 * 1024 + 16)) ],
    [ 'routes/bytecode.lua', 'bytecode', "\x1bLJ\x02" ],
);
my %before = map { $_ => fleet_refused($nodes[0], $_) }
             qw(name tree size bytecode);
for my $h (@hostile) {
    $etcd->put($prefix . $h->[0], $h->[2] // 'ngx.say("x")');
}
ok(wait_until(5, sub {
       !grep { !fleet_error($nodes[0], $_->[0]) } @hostile }),
   'every hostile key is reported');
for my $h (@hostile) {
    is((fleet_error($nodes[0], $h->[0]) // {})->{reason}, $h->[1],
       "$h->[0]: refused ($h->[1])");
}
ok(!-e '/tmp/fleet-escape.lua', 'nothing was written outside the roots');
is_deeply([grep { !/^(?:hello|uses|broken)\.lua$/ } dir_files($nodes[0]{routes})],
          [], 'nothing but the good routes in the routes tree');
my $refused_name = fleet_refused($nodes[0], 'name');
is($refused_name - $before{name}, 5,
   '/metrics: gateway_fleet_refused_total{reason="name"} counts them');


# --- 4. a node's agent killed: the new one resumes from the state file ---

my $node = $nodes[1];
my $resyncs = $node->status->{fleet}{resyncs};
my ($agent) = $node->agents;
kill KILL => $agent;
ok(wait_until(10, sub { my ($a) = $node->agents; $a && $a != $agent
                        && ($node->status->{fleet}{node} // '') }),
   'kill -9 of a node\'s agent: a new agent');
$etcd->put("${prefix}routes/after-kill.lua", 'ngx.say("after kill")');
ok(all_serve('/lua/after-kill', '200 after kill', 10),
   'the new agent applies what comes next');
is($node->status->{fleet}{resyncs}, $resyncs,
   'without reading the whole prefix again (it resumed at its revision)');


# --- 4b. a new agent catching up on large revisions ---

# 12 revisions of 0.9 MB while node 1's agent is away; the next agent's
# watch gets them from history in one answer, past what etcd's gateway
# passes (4 MiB) unless etcd splits it into fragments
($agent) = $node->agents;
kill STOP => $agent;
my $pad = '-- ' . ('x' x 900_000) . "\n";
$etcd->put("${prefix}routes/big/b$_.lua", $pad . "ngx.say('big $_')")
    for 1 .. 12;
kill KILL => $agent;
ok(wait_until(30, sub { join(' ', $node->get('/lua/big/b12')) eq '200 big 12' }),
   'a new agent catches up on 12 revisions of 0.9 MB (a fragmented answer)')
    or diag(explain($node->status->{fleet}));
my ($s7, $b7) = $node->get('/lua/big/b7');
is("$s7 $b7", '200 big 7', 'every one of them');
is($node->status->{fleet}{resyncs}, $resyncs,
   'from the watch, without reading the whole prefix again');
$etcd->remove("${prefix}routes/big/b$_.lua") for 1 .. 12;
ok(all_serve('/lua/big/b12', '404', 10), 'and they are deleted again');


# --- 5. etcd stopped: the nodes serve on, say so, and catch up ---

$etcd->stop($_) for 0 .. 2;
ok(wait_until(15, sub { !grep { $_->status->{fleet}{connected} } @nodes }),
   'all of etcd stopped: every node says connected=false');
ok(all_serve('/lua/hello', '200 hello v2', 1), 'and every node still serves');
is($nodes[0]->metrics->{gateway_fleet_connected}, 0,
   '/metrics: gateway_fleet_connected 0');
# all three at once: one alone has no quorum
$etcd->spawn($_) for 0 .. 2;
defined $etcd->wait_leader(30) or BAIL_OUT('etcd has no leader again');
$etcd->put("${prefix}routes/back.lua", 'ngx.say("back")');
ok(all_serve('/lua/back', '200 back', 40),
   'etcd back: every node catches up');
ok(wait_until(5, sub { !grep { !$_->status->{fleet}{connected} } @nodes }),
   'and says connected=true');


# --- 6. compaction while a node cannot see etcd: a resync on return ---

# stopped, the agent's watch connection stays open and etcd queues the
# events on it; killed then, the next agent finds its revision compacted
$node = $nodes[2];
($agent) = $node->agents;
$resyncs = $node->status->{fleet}{resyncs};
kill STOP => $agent;
$etcd->put("${prefix}routes/while-away.lua", 'ngx.say("while away")');
$etcd->remove("${prefix}routes/hello.lua");
$etcd->put("${prefix}lib/shared/ver.lua", 'return { v = "m3" }');
$etcd->compact($etcd->revision);
kill KILL => $agent;
ok(wait_until(30, sub { ($node->status->{fleet}{resyncs} // 0) > $resyncs }),
   'compaction while the agent was away: the next one reads the prefix '
   . 'again');
ok(all_serve('/lua/while-away', '200 while away', 10),
   'every node has what was published meanwhile');
ok(all_serve('/lua/hello', '404', 5), 'and none has what was deleted');
trees_equal('after the resync');


# --- 6b. a resync that would empty a tree holds the deletions ---

# ten routes, then, while node 2's agent is away, all but one deleted and
# the history compacted: its next agent finds them gone in a full read
txn(map { (put => "routes/many/r$_.lua" => "ngx.say('r$_')") } 1 .. 10);
ok(all_serve('/lua/many/r10', '200 r10', 10), 'ten more routes');
($agent) = $node->agents;
kill STOP => $agent;
$etcd->remove("${prefix}routes/many/r$_.lua") for 1 .. 9;
$etcd->remove("${prefix}routes/$_.lua") for qw(uses broken after-kill back while-away);
$etcd->compact($etcd->revision);
kill KILL => $agent;
ok(wait_until(30, sub { $node->status->{fleet}{held} }),
   'more than half of a tree gone at once: the deletions are held')
    or diag(explain($node->status->{fleet}));
is($node->status->{fleet}{held}{routes}, 14, '/status: fleet.held.routes');
my ($held_s, $held_b) = $node->get('/lua/many/r3');
is("$held_s $held_b", '200 r3', 'the held files keep serving');
my ($other_s) = $nodes[0]->get('/lua/many/r3');
is($other_s, 404, 'while a node that followed the watch deleted them');
write_file("$node->{prefix}/fleet.confirm", '');
ok(wait_until(20, sub { !$node->status->{fleet}{held} }),
   'an operator confirms ($RUN/fleet.confirm): the deletions go ahead');
($held_s) = $node->get('/lua/many/r3');
is($held_s, 404, 'and the files are gone');
ok(!-e "$node->{prefix}/fleet.confirm", 'the confirmation is used up');
trees_equal('after the held deletions');


# --- 7. the leader killed under a stream of publishes ---

my $leader = $etcd->wait_leader(10);
my $stream_until = time + 4;
my $n = 0;
my $killed;
while (time < $stream_until) {
    $n++;
    eval { $etcd->put("${prefix}routes/stream.lua", "ngx.say('s$n')") }
        or $n--;
    if (!$killed && time > $stream_until - 3) {
        $etcd->kill9($leader);
        $killed = 1;
    }
    sleep 0.05;
}
$etcd->restart($leader);
$etcd->wait_leader(20);
ok(all_serve('/lua/stream', "200 s$n", 20),
   "the leader killed under $n publishes: every node ends at the last");
trees_equal('after the leader was killed');


# --- 8. /metrics, the reports under agents/, stop ---

my $metrics = $nodes[0]->metrics;
is($metrics->{gateway_fleet_revision}, $nodes[0]->status->{fleet}{revision},
   '/metrics: gateway_fleet_revision is the revision applied');
ok($metrics->{gateway_fleet_applied_total} >= 10,
   '/metrics: gateway_fleet_applied_total counts the files written');
ok($metrics->{gateway_fleet_resyncs_total} >= 1,
   '/metrics: gateway_fleet_resyncs_total');
is($metrics->{gateway_fleet_connected}, 1, '/metrics: connected');
my $reports = $etcd->range("${prefix}agents/");
is_deeply([sort keys %$reports],
          [map { "${prefix}agents/node$_" } 0 .. 2],
          'each node reports under agents/')
    or diag(explain($reports));



# --- 9. authentication: the node's role reads, a wrong password says so ---

my $pw = $etcd->enable_auth(fleet => $fleet);
write_file("$nodes[0]{base}/node.pw", "$pw->{node}\n");
write_file("$nodes[1]{base}/node.pw", "not-the-password\n");
for my $i (0, 1) {
    write_file("$nodes[$i]{prefix}/fleet",
               join '', map { "$_\n" } 'ETCD=' . $etcd->endpoints,
                    "FLEET=$fleet", "NODE=node$i", 'ETCD_USER=node',
                    "ETCD_PASSWORD_FILE=$nodes[$i]{base}/node.pw");
}
# new agents read the settings (and node 2's, without credentials, leaves
# the watch that etcd kept for it from before auth was enabled)
for my $gw (@nodes) {
    my ($a) = $gw->agents;
    kill KILL => $a;
}
$etcd->put("${prefix}routes/authed.lua", 'ngx.say("authed")');
ok(wait_until(20, sub { my ($s, $b) = $nodes[0]->get('/lua/authed');
                        "$s $b" eq '200 authed' }),
   'a node with the node role follows the fleet');
ok(wait_until(20, sub { my $f = $nodes[1]->status->{fleet};
                        !$f->{connected}
                        && ($f->{last_error} // '') =~ /authentication/ }),
   'a wrong password: /status says connected=false and why')
    or diag(explain($nodes[1]->status->{fleet}), `ps -ef | grep nginx`);
my $f1 = $nodes[1]->status->{fleet};
like($f1->{last_error}, qr/^authentication as node: .*(?:password|auth)/i,
     "... in etcd's words");
my $log1 = $nodes[1]->read_log;
like($log1, qr/gateway fleet: authentication as node/,
     'and the error log says it');
unlike($log1 . $nodes[0]->read_log, qr/\Q$pw->{node}\E|not-the-password/,
       'no password in any log');
unlike(join('', map { $_->get('/status', $_->{status_port}) } @nodes),
       qr/\Q$pw->{node}\E|not-the-password/, 'nor in /status');
ok(wait_until(20, sub { my $f = $nodes[2]->status->{fleet};
                        !$f->{connected} && $f->{last_error} }),
   'a node without credentials: connected=false')
    or diag(explain($nodes[2]->status->{fleet}{last_error}));
note('without credentials: ' . ($nodes[2]->status->{fleet}{last_error} // ''));
my ($s2) = $nodes[2]->get('/lua/authed');
is($s2, 404, '... and it gets nothing new');

$_->stop for @nodes;
$etcd->stop_all;


# --- 10. TLS: the server's certificate verified, a client certificate ---

my $certs = TestEtcd->make_certs(servroot('fleet-certs'));
my $tls = TestEtcd->start(members => 1, dir => servroot('fleet-etcd-tls'),
                          port => $base + 150,
                          tls => { ca => $certs->{ca},
                                   cert => $certs->{server_cert},
                                   key => $certs->{server_key} },
                          client_cert => $certs->{client_cert},
                          client_key => $certs->{client_key});
my %tls_fleet = (ETCD => scalar $tls->endpoints, FLEET => $fleet,
                 NODE => 'tls', ETCD_CA => $certs->{ca},
                 ETCD_CERT => $certs->{client_cert},
                 ETCD_KEY => $certs->{client_key});
my $tnode = ShippedGateway->new(base => servroot('fleet-node-tls'),
                                port => $base + 20, workers => 1,
                                fleet => \%tls_fleet);
$tnode->start;
$tls->put("${prefix}routes/tls.lua", 'ngx.say("over TLS")');
ok(wait_until(15, sub { join(' ', $tnode->get('/lua/tls')) eq '200 over TLS' }),
   'over TLS with a client certificate: the node follows')
    or diag(explain($tnode->status->{fleet}));
$tnode->stop;

# the same node trusting another CA refuses the server
my $other = TestEtcd->make_certs(servroot('fleet-certs-other'));
my $bad = ShippedGateway->new(base => servroot('fleet-node-tls-bad'),
                              port => $base + 22, workers => 1,
                              fleet => { %tls_fleet, NODE => 'tls-bad',
                                         ETCD_CA => $other->{ca} });
$bad->start;
ok(wait_until(15, sub { ($bad->status->{fleet}{last_error} // '')
                        =~ /TLS|certificate|handshake/i }),
   'a server certificate from another CA: refused, and /status says so')
    or diag(explain($bad->status->{fleet}));
my ($sb) = $bad->get('/lua/tls');
is($sb, 404, '... and nothing is served from it');
$bad->stop;
$tls->stop_all;

done_testing();


# --- helpers ---

# every node answers $want ("status body" without the newline) within
# $secs
sub all_serve {
    my ($path, $want, $secs) = @_;
    return wait_until($secs, sub {
        !grep { my ($s, $b) = $_->get($path); $b //= '';
                chomp $b;
                ($want =~ / / ? "$s $b" : $s) ne $want } @nodes });
}

sub txn {
    my @ops;
    while (my ($op, $key, $value) = splice @_, 0, 3) {
        push @ops, { request_put => { key => TestEtcd::b64($prefix . $key),
                                      value => TestEtcd::b64($value) } };
    }
    my $res = $etcd->call('/v3/kv/txn', { success => \@ops });
    die "txn: " . ($res->{message} // 'failed') . "\n" unless $res->{succeeded}
                                                        || $res->{header};
    return $res;
}

sub fleet_error {
    my ($gw, $key) = @_;
    my $errors = $gw->status->{fleet}{errors} // [];
    $errors = [] unless ref $errors eq 'ARRAY';
    my ($e) = grep { $_->{key} eq $key } @$errors;
    return $e;
}

sub fleet_refused {
    my ($gw, $reason) = @_;
    return $gw->metrics->{"gateway_fleet_refused_total{reason=\"$reason\"}"}
           // 0;
}

sub dir_files {
    my $dir = shift;
    opendir my $dh, $dir or return ();
    return sort grep { -f "$dir/$_" } readdir $dh;
}

# every node's routes/ and modules/ hold exactly what etcd holds (the
# routes that compile)
sub trees_equal {
    my $when = shift;
    my $kv = $etcd->range($prefix);
    for my $gw (@nodes) {
        my %want;
        for my $k (keys %$kv) {
            my ($tree, $name) = $k =~ m{^\Q$prefix\E(routes|lib)/(.+)$}
                or next;
            next if fleet_error($gw, "$tree/$name");
            $want{($tree eq 'lib' ? $gw->{modules} : $gw->{routes})
                  . "/$name"} = $kv->{$k};
        }
        my %have;
        for my $root ($gw->{routes}, $gw->{modules}) {
            for my $f (split /\n/, `find $root -type f -name '*.lua'`) {
                (my $key = $f) =~ s{^\Q$gw->{routes}\E/}{routes/};
                $key =~ s{^\Q$gw->{modules}\E/}{lib/};
                # a refused version leaves the last good one in place
                $have{$f} = slurp($f) unless fleet_error($gw, $key);
            }
        }
        is_deeply(\%have, \%want, "$when: $gw->{base}'s trees are etcd's");
    }
}
