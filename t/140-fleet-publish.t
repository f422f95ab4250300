# The fleet's command line against a real etcd (t/TestEtcd.pm):
# gatewayctl publish (route-check and the compile check first, then one
# transaction of puts and deletions), gatewayctl fleet (the nodes'
# reports), authentication and TLS, and what gatewayctl start makes of
# ETCD, FLEET and the rest ($PREFIX/fleet).

use strict;
use warnings;

use Cwd qw(realpath);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP qw(encode_json);
use Test::More;

use lib dirname(realpath(__FILE__));
use ShippedGateway;
use TestEtcd;

my $top = realpath(dirname(realpath(__FILE__)) . '/..');
my $base = servroot('fleet-publish');
my $port = $ENV{TEST_NGINX_FLEET_PORT} || 1988;
my $fleet = 'f1';
my $prefix = "/gateway/$fleet";

-x "$top/build/bin/route-check" or BAIL_OUT('run make first');

remove_tree($base);
make_path($base);

# tokens expire after 2 s unused: publish renews them (auth, at the end)
my $etcd = TestEtcd->start(members => 3, dir => "$base/etcd",
                           flags => [ '--auth-token-ttl', 2 ]);
# a dead endpoint first: the next ones are tried in order
my $dead = 'http://127.0.0.1:' . (TestEtcd::free_ports(1, 40000))[0];
my %fleet_env = (ETCD => "$dead," . $etcd->endpoints, FLEET => $fleet);


# (exit code, stdout and stderr) of gateway/bin/gatewayctl @args with
# %$env added to the environment (and no fleet setting of the caller's)
sub ctl {
    my ($env, @args) = @_;
    local %ENV = %ENV;
    delete @ENV{qw(ETCD FLEET NODE ETCD_USER ETCD_PASSWORD_FILE ETCD_CA
                   ETCD_CERT ETCD_KEY)};
    @ENV{ keys %$env } = values %$env;
    $ENV{ROUTE_CHECK} = "$top/build/bin/route-check";
    my $pid = open(my $fh, '-|') // die "fork: $!\n";
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT or die;
        exec "$top/gateway/bin/gatewayctl", @args or die "exec: $!\n";
    }
    my $out = do { local $/; <$fh> } // '';
    close $fh;
    return ($? >> 8, $out);
}

sub publish { ctl({ %fleet_env, %{ $_[1] // {} } }, 'publish', $_[0]) }

# a tree to publish: { relative path => content }, written anew
sub tree {
    my ($name, $files) = @_;
    my $dir = "$base/$name";
    remove_tree($dir);
    make_path($dir);
    write_file("$dir/$_", $files->{$_}) for keys %$files;
    return $dir;
}

# the revisions at which @keys were last written, distinct, comma-separated
sub revisions_of {
    my %rev = map { $etcd->mod_revision($_) // 'none' => 1 } @_;
    return join ',', sort keys %rev;
}

sub published {
    my $all = $etcd->range("$prefix/");
    delete $all->{$_} for grep { m{^\Q$prefix\E/agents/} } keys %$all;
    return $all;
}


# An HTTP relay to etcd's leader on a port of its own, in a child:
# $before->($path, $n) runs before the $n-th request of that path is
# passed on. (URL, pid); every request's path is logged in relay.log.
sub relay {
    my ($before) = @_;
    my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                       Listen => 5, ReuseAddr => 1)
        or die "listen: $!\n";
    my $url = 'http://127.0.0.1:' . $listen->sockport;
    my $upstream = $etcd->endpoint($etcd->wait_leader(20));
    my $pid = spawn("$base/relay.log", sub {
        my $http = HTTP::Tiny->new(timeout => 10);
        my %seen;
        while (my $c = $listen->accept) {
            while (defined(my $line = <$c>)) {
                my ($path) = $line =~ m{^POST (\S+) HTTP/1} or last;
                my %h;
                while (defined(my $l = <$c>)) {
                    last if $l =~ /^\r?\n\z/;
                    $h{ lc $1 } = $2 if $l =~ /^([^:]+):\s*(.*?)\r?\n\z/;
                }
                read($c, my $body, $h{'content-length'} // 0);
                print "$path\n";
                $before->($path, ++$seen{$path});
                my %fwd = ('Content-Type' => 'application/json');
                $fwd{Authorization} = $h{authorization}
                    if defined $h{authorization};
                my $r = $http->post("$upstream$path",
                                    { headers => \%fwd, content => $body });
                print $c "HTTP/1.1 $r->{status} $r->{reason}\r\n",
                         "Content-Type: application/json\r\n",
                         "Content-Length: ", length $r->{content},
                         "\r\n\r\n", $r->{content};
            }
            close $c;
        }
    });
    close $listen;
    return ($url, $pid);
}

sub stop_relay {
    kill TERM => $_[0];
    reap($_[0], 5);
}


# --- publish ---

my %files = (
    'routes/hello.lua'    => "ngx.say('hello')\n",
    'routes/v1/time.lua'  => "ngx.say(ngx.time())\n",
    'modules/greeting.lua' => "return { hi = 'hi' }\n",
    'modules/a/b.lua'     => "return {}\n",
    'sandbox/s.lua'       => "ngx.say('sandboxed')\n",
);
my %keys = (
    "$prefix/routes/hello.lua"   => $files{'routes/hello.lua'},
    "$prefix/routes/v1/time.lua" => $files{'routes/v1/time.lua'},
    "$prefix/lib/greeting.lua"   => $files{'modules/greeting.lua'},
    "$prefix/lib/a/b.lua"        => $files{'modules/a/b.lua'},
    "$prefix/sandbox/s.lua"      => $files{'sandbox/s.lua'},
);

# a node's report, and a key of another fleet: neither is touched
my $report = encode_json({ node => 'n0', revision => 1, connected => \1,
                           errors => [], at => time });
$etcd->put("$prefix/agents/n0", $report);
$etcd->put("/gateway/other/routes/hello.lua", "ngx.say('other')\n");

my $dir = tree('tree', \%files);
my $before = $etcd->revision;
my ($rc, $out) = publish($dir);
is($rc, 0, 'publish') or diag($out);
my ($rev) = $out =~ /^published 5 changes, 0 deletions at revision (\d+)$/m;
ok($rev, 'publish says what it wrote, and at which revision') or diag($out);
is($rev, $before + 1, 'in one transaction: one revision');
is_deeply(published(), \%keys, 'the keys and values are exactly the tree');
is(revisions_of(keys %keys), $rev, 'every key written at it');
is($etcd->get("$prefix/agents/n0"), $report, 'agents/ untouched');
is($etcd->get('/gateway/other/routes/hello.lua'), "ngx.say('other')\n",
   'another fleet untouched');

($rc, $out) = publish($dir);
is($rc, 0, 'publish again');
like($out, qr/^nothing to publish: fleet f1 already holds .* \(revision $rev\)$/m,
     'nothing changed: says so');
is($etcd->revision, $rev, 'and writes nothing');

# one changed file, one deleted: one revision with the put and the delete
write_file("$dir/routes/hello.lua", "ngx.say('hello again')\n");
unlink "$dir/modules/a/b.lua";
($rc, $out) = publish($dir);
is($rc, 0, 'publish a change and a deletion') or diag($out);
like($out, qr/^published 1 changes, 1 deletions at revision ${\($rev + 1)}$/m,
     'one put, one deletion, one revision');
$keys{"$prefix/routes/hello.lua"} = "ngx.say('hello again')\n";
delete $keys{"$prefix/lib/a/b.lua"};
is_deeply(published(), \%keys, 'etcd holds the tree again');
is(revisions_of("$prefix/routes/v1/time.lua"), $rev,
   'an unchanged key is not rewritten');
$rev++;

# a key no tree has (put by hand, outside the grammar too) is deleted
$etcd->put("$prefix/routes/stray.lua", "ngx.say('stray')\n");
$etcd->put("$prefix/sandbox/bad name.lua", "ngx.say('x')\n");
($rc, $out) = publish($dir);
like($out, qr/^published 0 changes, 2 deletions at revision \d+$/m,
     'keys the tree does not have are deleted') or diag($out);
is_deeply(published(), \%keys, 'etcd holds the tree');
is($etcd->get("$prefix/agents/n0"), $report, 'agents/ still untouched');
$rev = $etcd->revision;

# a missing directory leaves its tree alone
{
    my $only = tree('only-routes', {
        'routes/hello.lua' => $files{'routes/hello.lua'} });
    ($rc, $out) = publish($only);
    like($out, qr/^published 1 changes, 1 deletions/m,
         'a tree of routes/ alone') or diag($out);
    is($etcd->get("$prefix/lib/greeting.lua"), $files{'modules/greeting.lua'},
       'leaves lib/ as it is');
    is($etcd->get("$prefix/sandbox/s.lua"), $files{'sandbox/s.lua'},
       'and sandbox/');
    ok(!defined $etcd->get("$prefix/routes/v1/time.lua"),
       'deletes the routes it does not have');
    ($rc, $out) = publish($dir);
    is($rc, 0, 'the whole tree again') or diag($out);
    $rev = $etcd->revision;
}


# --- refused before etcd ---

my @refused = (
    [ 'a script that does not compile', 'routes/broken.lua', "ngx.say(\n",
      qr{routes/broken\.lua does not compile: line 2: unexpected symbol near '<eof>'$}m ],
    [ 'a module that does not compile', 'modules/m.lua', "local x = = 1\n",
      qr{modules/m\.lua does not compile: line 1: unexpected symbol near '='$}m ],
    [ 'a name route-check refuses', 'routes/bad name.lua', "ngx.say(1)\n",
      qr{routes/bad name\.lua: reject bad byte} ],
    [ 'a name with a leading dash', 'sandbox/-x.lua', "ngx.say(1)\n",
      qr{sandbox/-x\.lua: reject leading dash} ],
    [ 'a file that is not a script', 'routes/README', "text\n",
      qr{routes/README: not a route script} ],
    [ 'bytecode', 'routes/bc.lua', "\x1bLJ\x02",
      qr{routes/bc\.lua: bytecode} ],
);
for my $case (@refused) {
    my ($what, $file, $content, $why) = @$case;
    write_file("$dir/$file", $content);
    write_file("$dir/routes/hello.lua", "ngx.say('would be published')\n");
    ($rc, $out) = publish($dir);
    isnt($rc, 0, "$what: refused");
    like($out, $why, "$what: says which file and why") or diag($out);
    like($out, qr/nothing was published/, "$what: says nothing was published");
    is($etcd->revision, $rev, "$what: nothing written");
    unlink "$dir/$file";
}
write_file("$dir/routes/hello.lua", "ngx.say('hello again')\n");


# --- etcd's limits: the whole transaction refused, nothing half-done ---

{
    my $many = tree('many', { map { ("routes/r$_.lua" => "return $_\n") }
                              1 .. 129 });
    ($rc, $out) = publish($many);
    isnt($rc, 0, '129 puts: refused');
    like($out, qr/refused by etcd: 129 puts and \d+ deletions are more operations than one transaction may hold \(etcd's --max-txn-ops, 128 by default\); nothing was published/,
         'says the transaction holds too many operations') or diag($out);
    is($etcd->revision, $rev, 'nothing written');

    # past etcd's limit, then past its gRPC server's too
    for my $mib (1.7, 2.1) {
        my $big = tree('big', { 'routes/big.lua' => '--'
                                . ('x' x ($mib * 1024 * 1024)) . "\n" });
        ($rc, $out) = publish($big);
        isnt($rc, 0, "a $mib MiB script: refused");
        like($out, qr/refused by etcd: 1 puts and \d+ deletions \(\d+ bytes of scripts\) are larger than one request may be \(etcd's --max-request-bytes, 1\.5 MiB by default\); nothing was published/,
             'says the request is too large') or diag($out);
        is($etcd->revision, $rev, 'nothing written');
    }
}


# --- endpoints ---

{
    ($rc, $out) = ctl({ ETCD => "$dead,$dead", FLEET => $fleet },
                      'publish', $dir);
    isnt($rc, 0, 'no endpoint answers: refused');
    like($out, qr/no etcd endpoint answers: \Q$dead\E: .*; \Q$dead\E: /,
         'says so, with each endpoint and why') or diag($out);

    # a member that takes connections but never answers (SIGSTOP): the
    # request times out, and the next one answers
    my $leader = $etcd->wait_leader(20);
    my ($hung) = grep { $_ != $leader } 0 .. 2;
    my @order = ($hung, grep { $_ != $hung } 0 .. 2);
    $etcd->pause($hung);
    write_file("$dir/routes/hung.lua", "ngx.say('past a hung member')\n");
    ($rc, $out) = publish($dir, {
        ETCD => join(',', map { $etcd->endpoint($_) } @order),
        ETCD_TIMEOUT => 2 });
    $etcd->resume($hung);
    is($rc, 0, 'a hung member first: the next one answers') or diag($out);
    like($out, qr/^published 1 changes, 0 deletions/m, 'published');
    unlink "$dir/routes/hung.lua";
    ($rc, $out) = publish($dir);
    $rev = $etcd->revision;
}


# --- another publisher between the read and the transaction ---

# etcd behind a relay that, before it passes the transaction on, has
# another publisher write a route: the transaction must not apply
{
    my ($relayed, $relay) = relay(sub {
        $etcd->put("$prefix/routes/late.lua", "ngx.say('late')\n")
            if $_[0] eq '/v3/kv/txn' && $_[1] == 1;
    });

    write_file("$dir/routes/hello.lua", "ngx.say('hello, concurrently')\n");
    ($rc, $out) = publish($dir, { ETCD => $relayed });
    stop_relay($relay);
    isnt($rc, 0, 'a publish raced by another: refused');
    like($out, qr/the fleet's trees changed after revision $rev \(another publish\?\): nothing was published; run it again/,
         'says so') or diag($out);
    is($etcd->get("$prefix/routes/late.lua"), "ngx.say('late')\n",
       'the other publish stands');
    is($etcd->get("$prefix/routes/hello.lua"), "ngx.say('hello again')\n",
       'nothing of this one was written');

    ($rc, $out) = publish($dir);
    like($out, qr/^published 1 changes, 1 deletions/m,
         'run again, it sees the other publish (and deletes it)')
        or diag($out);
    write_file("$dir/routes/hello.lua", "ngx.say('hello again')\n");
    publish($dir);
    $rev = $etcd->revision;
}


# --- gatewayctl fleet ---

{
    my $lease = $etcd->lease(60);
    my $short = $etcd->lease(6);
    my $now = time;
    $etcd->put("$prefix/agents/host-a:9001",
               encode_json({ node => 'host-a:9001', revision => $rev,
                             connected => \1, errors => [], at => $now - 2 }),
               lease => $lease);
    $etcd->put("$prefix/agents/host-b:9001",
               encode_json({ node => 'host-b:9001', revision => $rev - 3,
                             connected => \0, at => $now - 30,
                             errors => [ { key => "$prefix/routes/x.lua",
                                           error => "x.lua:1: '=' expected" },
                                         { key => "$prefix/routes/y.lua",
                                           error => 'refused' } ] }),
               lease => $short);
    $etcd->remove("$prefix/agents/n0");

    ($rc, $out) = ctl(\%fleet_env, 'fleet');
    is($rc, 0, 'gatewayctl fleet') or diag($out);
    like($out, qr/^NODE\s+REVISION\s+AGE\s+ERRORS\s+FIRST ERROR$/m,
         'a header');
    like($out, qr/^host-a:9001\s+$rev\s+([2-9]|\d\d)s\s+0$/m,
         'a node up to date: its revision, the age of its report, no error');
    like($out, qr{^host-b:9001\s+${\($rev - 3)}\s+(3\d|[4-9]\d)s\s+2\s+disconnected from etcd; \Q$prefix\E/routes/x\.lua: x\.lua:1: '=' expected$}m,
         'a node behind: its errors, the first one, disconnected');
    my $now_rev = $etcd->revision;
    like($out, qr/^fleet f1: 2 nodes reporting, etcd at revision $now_rev$/m,
         'and the store\'s revision');

    ok(wait_until(30, sub {
        ($rc, $out) = ctl(\%fleet_env, 'fleet');
        $out !~ /host-b/;
    }), 'a node whose lease expired is no longer listed') or diag($out);
    like($out, qr/^host-a:9001 /m, 'the other one still is');
    like($out, qr/^fleet f1: 1 node reporting/m, 'one node');

    $etcd->put("$prefix/agents/garbled", "not json\x01");
    ($rc, $out) = ctl(\%fleet_env, 'fleet');
    like($out, qr/^garbled\s+\?\s+\?\s+\?\s+the report is not JSON$/m,
         'a report that is not JSON is shown as such');
    $etcd->remove("$prefix/agents/garbled");

    # what a node says is printed as text, on one line, bounded
    $etcd->put("$prefix/agents/odd", encode_json({
        revision => { x => 1 }, at => 'soon',
        errors => [ { key => 'k', error => "a\e[31mred\n" . 'x' x 300 } ] }));
    ($rc, $out) = ctl(\%fleet_env, 'fleet');
    like($out, qr/^odd\s+\?\s+\?\s+1\s+k: a\?\[31mred\?x{187}\.\.\.$/m,
         'a report\'s odd values: escaped, cut at 200 bytes') or diag($out);
    $etcd->remove("$prefix/agents/odd");
}


# --- the settings, and $PREFIX/fleet ---

my $pwfile = "$base/password";
write_file($pwfile, "not-the-password\n", 0600);

my $gw = ShippedGateway->new(base => "$base/node", port => $port);

my @invalid = (
    [ 'ETCD without FLEET', { ETCD => 'http://127.0.0.1:2379' },
      qr/FLEET is required with ETCD/ ],
    [ 'a bad FLEET', { ETCD => 'http://127.0.0.1:2379', FLEET => 'a/b' },
      qr{FLEET=a/b: a fleet's name is 1 to 64 of} ],
    [ 'a FLEET too long', { ETCD => 'http://127.0.0.1:2379',
                            FLEET => 'x' x 65 },
      qr/a fleet's name is 1 to 64 of/ ],
    [ 'an endpoint without a scheme', { ETCD => '127.0.0.1:2379', FLEET => 'f' },
      qr/ETCD: '127\.0\.0\.1:2379' is not an endpoint/ ],
    [ 'an endpoint with a path', { ETCD => 'http://127.0.0.1:2379,http://h:1/v3',
                                   FLEET => 'f' },
      qr{ETCD: 'http://h:1/v3' is not an endpoint} ],
    [ 'a port out of range', { ETCD => 'http://h:65536', FLEET => 'f' },
      qr{ETCD: 'http://h:65536' is not an endpoint} ],
    [ 'credentials in the URL', { ETCD => 'http://u:p@h:1', FLEET => 'f' },
      qr{is not an endpoint} ],
    [ 'a bad NODE', { ETCD => 'http://h:1', FLEET => 'f', NODE => 'a b' },
      qr/NODE=a b: a node's name is/ ],
    [ 'ETCD_USER without a password file',
      { ETCD => 'http://h:1', FLEET => 'f', ETCD_USER => 'u' },
      qr/ETCD_USER needs ETCD_PASSWORD_FILE/ ],
    [ 'a password file that is not there',
      { ETCD => 'http://h:1', FLEET => 'f', ETCD_USER => 'u',
        ETCD_PASSWORD_FILE => "$base/nothing" },
      qr{ETCD_PASSWORD_FILE=\S+/nothing is not a readable file} ],
    [ 'a certificate without its key',
      { ETCD => 'https://h:1', FLEET => 'f', ETCD_CERT => $pwfile },
      qr/ETCD_CERT and ETCD_KEY go together/ ],
    [ 'TLS files without an https endpoint',
      { ETCD => 'http://h:1', FLEET => 'f', ETCD_CA => $pwfile },
      qr/ETCD_CA, ETCD_CERT and ETCD_KEY are for https:\/\/ endpoints/ ],
    [ 'a CA that is a directory',
      { ETCD => 'https://h:1', FLEET => 'f', ETCD_CA => $base },
      qr/ETCD_CA=\S+ is not a readable file/ ],
);
for my $case (@invalid) {
    my ($what, $env, $why) = @$case;
    local @ENV{ keys %$env } = values %$env;
    ($rc, $out) = $gw->gatewayctl('start');
    isnt($rc, 0, "start with $what: refused");
    like($out, $why, "start with $what: says why") or diag($out);
    ok(!$gw->master, "start with $what: no nginx");
}

{
    # real PEM files: ETCD_CA goes into nginx.conf (lua_ssl_trusted_certificate)
    my $c = TestEtcd->make_certs("$base/settings-certs");
    local %ENV = (%ENV, ETCD => "http://127.0.0.1:1,https://[::1]:2379",
                  FLEET => 'prod-eu_1', ETCD_USER => 'node',
                  ETCD_PASSWORD_FILE => $pwfile, ETCD_CA => $c->{ca},
                  ETCD_CERT => $c->{client_cert},
                  ETCD_KEY => $c->{client_key});
    ($rc, $out) = $gw->gatewayctl('start');
    is($rc, 0, 'start with the fleet settings') or diag($out);
    my $file = "$gw->{prefix}/fleet";
    is((stat $file)[2] & 07777, 0600, '$PREFIX/fleet is 0600');
    my $host = `hostname`;
    chomp $host;
    is(slurp($file), join('', map { "$_\n" }
        "ETCD=http://127.0.0.1:1,https://[::1]:2379", 'FLEET=prod-eu_1',
        "NODE=$host:$port", 'ETCD_USER=node',
        "ETCD_PASSWORD_FILE=$pwfile", "ETCD_CA=$c->{ca}",
        "ETCD_CERT=$c->{client_cert}", "ETCD_KEY=$c->{client_key}"),
       'holds the settings, NODE defaulting to hostname:PORT');
    unlike(slurp($file), qr/not-the-password/, 'and not the password');
    is_deeply([ glob "$gw->{prefix}/fleet.*" ], [], 'no temporary file left');
    my ($code) = $gw->get('/lua/missing');
    is($code, 404, 'the node serves');
    $gw->stop;
}

{
    local %ENV = (%ENV, ETCD => 'http://127.0.0.1:1', FLEET => 'f',
                  NODE => 'node-7', ETCD_PASSWORD_FILE => '');
    ($rc, $out) = $gw->gatewayctl('start');
    is($rc, 0, 'start with NODE') or diag($out);
    like(slurp("$gw->{prefix}/fleet"), qr/^NODE=node-7\nETCD_USER=\n/m,
         'NODE as given, unset settings empty');
    $gw->stop;
}

($rc, $out) = $gw->gatewayctl('start');
is($rc, 0, 'start without ETCD') or diag($out);
ok(!-e "$gw->{prefix}/fleet", '$PREFIX/fleet is gone: local files only');
$gw->stop;


# --- TLS: a member that wants a client certificate ---

{
    my $certs = TestEtcd->make_certs("$base/certs");
    my $tls = TestEtcd->start(members => 1, dir => "$base/etcd-tls",
        tls => { ca => $certs->{ca}, cert => $certs->{server_cert},
                 key => $certs->{server_key} },
        client_cert => $certs->{client_cert},
        client_key => $certs->{client_key});
    my %env = (ETCD => scalar $tls->endpoints, FLEET => $fleet,
               ETCD_CA => $certs->{ca}, ETCD_CERT => $certs->{client_cert},
               ETCD_KEY => $certs->{client_key});
    ($rc, $out) = ctl(\%env, 'publish', $dir);
    is($rc, 0, 'publish over TLS with a client certificate') or diag($out);
    like($out, qr/^published 4 changes, 0 deletions at revision \d+$/m,
         'published') or diag($out);
    is($tls->get("$prefix/routes/hello.lua"), "ngx.say('hello again')\n",
       'the script is in etcd');

    ($rc, $out) = ctl({ %env, ETCD_CERT => '', ETCD_KEY => '' },
                      'publish', $dir);
    isnt($rc, 0, 'no client certificate: refused');
    like($out, qr/no etcd endpoint answers: https:/, 'says so') or diag($out);

    ($rc, $out) = ctl({ %env, ETCD_CA => '' }, 'fleet');
    isnt($rc, 0, 'a server certificate no known CA signed: refused');
    like($out, qr/certificate verify failed/i, 'says so') or diag($out);
    $tls->stop_all;
}


# --- authentication: last, it changes the cluster for good ---

{
    my $pw = $etcd->enable_auth(fleet => $fleet);
    for my $user (keys %$pw) {
        write_file("$base/$user.pw", "$pw->{$user}\n", 0600);
    }
    my %as = map { $_ => { ETCD_USER => $_,
                           ETCD_PASSWORD_FILE => "$base/$_.pw" } }
                 keys %$pw;

    write_file("$dir/routes/auth.lua", "ngx.say('published by publisher')\n");
    ($rc, $out) = publish($dir, $as{publisher});
    is($rc, 0, 'the publisher publishes') or diag($out);
    like($out, qr/^published 1 changes, 0 deletions/m, 'one change');
    is($etcd->get("$prefix/routes/auth.lua"),
       "ngx.say('published by publisher')\n", 'in etcd');

    my $rev = $etcd->revision;
    write_file("$dir/routes/auth.lua", "ngx.say('by a node')\n");
    ($rc, $out) = publish($dir, $as{node});
    isnt($rc, 0, 'a node cannot publish');
    like($out, qr/etcd at http:\S+: etcdserver: permission denied \(code 7\)/,
         'etcd\'s error, said plainly') or diag($out);
    is($etcd->revision, $rev, 'nothing written');

    ($rc, $out) = ctl({ %fleet_env, %{ $as{node} } }, 'fleet');
    is($rc, 0, 'a node reads the reports') or diag($out);

    ($rc, $out) = publish($dir);
    isnt($rc, 0, 'without credentials: refused');
    like($out, qr/etcdserver: user name is empty/, 'says so') or diag($out);

    # a token that expires (--auth-token-ttl 2) between the read and the
    # transaction: renewed once, the transaction goes through
    {
        my ($relayed, $relay) = relay(sub {
            sleep 4 if $_[0] eq '/v3/kv/txn' && $_[1] == 1;
        });
        write_file("$dir/routes/auth.lua", "ngx.say('after a renewal')\n");
        ($rc, $out) = publish($dir, { %{ $as{publisher} },
                                      ETCD => $relayed, ETCD_TIMEOUT => 10 });
        stop_relay($relay);
        is($rc, 0, 'a token expired before the transaction: renewed')
            or diag($out);
        is(join(',', grep { m{^/v3/(auth|kv/txn)} }
                          split /\n/, slurp("$base/relay.log")),
           '/v3/auth/authenticate,/v3/kv/txn,/v3/auth/authenticate,/v3/kv/txn',
           'authenticated again, then the transaction again');
        is($etcd->get("$prefix/routes/auth.lua"),
           "ngx.say('after a renewal')\n", 'published');
        $rev = $etcd->revision;
    }

    write_file("$base/wrong.pw", "wrong-$pw->{publisher}\n", 0600);
    ($rc, $out) = publish($dir, { ETCD_USER => 'publisher',
                                  ETCD_PASSWORD_FILE => "$base/wrong.pw" });
    isnt($rc, 0, 'a wrong password: refused');
    like($out, qr/authenticating as publisher: etcdserver: authentication failed, invalid user ID or password/,
         'says so') or diag($out);
    unlike($out, qr/\Q$pw->{publisher}\E/, 'the password is not printed');
    is($etcd->revision, $rev, 'nothing written');
}

$gw->reports_ok if TestChecked::checked();

done_testing;
