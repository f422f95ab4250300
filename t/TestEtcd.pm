package TestEtcd;

# Real etcd members for the tests: Debian's /usr/bin/etcd (3.4), started
# on free loopback ports with their data in a directory of the test's,
# spoken to through the v3 HTTP/JSON gateway, stopped at exit whatever
# happened (an END block; the members also die with the test process
# should it be killed: PR_SET_PDEATHSIG).
#
#   use TestEtcd;
#
#   my $etcd = TestEtcd->start(members => 3, dir => servroot('etcd'));
#   $ENV{ETCD} = $etcd->endpoints;        # "http://127.0.0.1:P1,..."
#
# The cluster:
#   start(%opt)         a new cluster, healthy when it returns (dies with
#                       the members' logs otherwise). members (3), dir (a
#                       temporary directory), port (the first port tried,
#                       TEST_ETCD_PORT or 23790; two per member, each one
#                       checked free), max_txn_ops, max_request_bytes,
#                       tls => { ca, cert, key } (the server's: https://
#                       client URLs, client certificates required; the
#                       harness's own requests then use client_cert and
#                       client_key), flags => [ more etcd flags ]
#   endpoints           the client URLs, comma-separated; in list context
#                       the list
#   endpoint($i)        member $i's client URL (members count from 0)
#   pid($i), log_file($i)  its process and its log file
#   stop($i)            SIGTERM, and waits until it is gone
#   kill9($i)           SIGKILL, and waits
#   pause($i), resume($i)  SIGSTOP, SIGCONT
#   restart($i)         starts a stopped member again on its data
#   leader              the index of the leader (undef when none answers)
#   wait_leader($secs)  the leader's index, once there is one
#   stop_all            every member (SIGTERM); at exit SIGKILL
#
# Keys, through the first member that answers (as root once auth is on):
#   call($path, \%body) the decoded answer; etcd's error bodies come back
#                       as they are ({error, message, code});
#                       checked() the same, dying on them
#   put($key, $value, lease => $id)   the revision of the write
#   get($key)           the value, or undef
#   mod_revision($key)  the revision of its last write, or undef
#   remove($key)        the revision; remove_prefix($prefix) likewise
#   range($prefix)      { key => value } of the keys beginning with it
#   revision            the store's current revision
#   compact($revision)  physical compaction up to $revision
#   lease($ttl)         a lease's id
#
# Authentication:
#   enable_auth(fleet => $f)  the users root, publisher (role publisher:
#                       readwrite on /gateway/<f>/) and node (role node:
#                       read on /gateway/<f>/, readwrite on
#                       /gateway/<f>/agents/); auth enabled. Returns
#                       { user => password }, random passwords.
#
# TLS material:
#   make_certs($dir)    a CA, a server certificate for 127.0.0.1 and a
#                       client certificate signed by it (openssl), as
#                       { ca, server_cert, server_key, client_cert,
#                       client_key } paths

use strict;
use warnings;

use Config;
use File::Path qw(make_path remove_tree);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP ();
use MIME::Base64 qw(encode_base64 decode_base64);
use POSIX qw(WNOHANG _exit);
use Time::HiRes qw(sleep time);

use Cwd qw(realpath);
use File::Basename qw(dirname);
use lib dirname(realpath(__FILE__));
use TestGateway::Util qw(slow slurp write_file);

my $Etcd = $ENV{TEST_ETCD_BINARY} || '/usr/bin/etcd';
my $Json = JSON::PP->new->utf8->canonical;
my $Owner = $$;
my @Clusters;               # stopped at exit


sub start {
    my ($class, %opt) = @_;
    -x $Etcd or die "$Etcd is missing (Debian: etcd-server)\n";

    my $n = $opt{members} // 3;
    my $dir = $opt{dir} // tempdir('test-etcd-XXXXXX', TMPDIR => 1,
                                   CLEANUP => 1);
    remove_tree($dir);
    make_path($dir);

    my $tls = $opt{tls};
    my $scheme = $tls ? 'https' : 'http';
    my @ports = free_ports(2 * $n,
                           $opt{port} || $ENV{TEST_ETCD_PORT} || 23790);
    my @members = map { {
        name   => "m$_",
        client => "$scheme://127.0.0.1:" . $ports[2 * $_],
        peer   => "http://127.0.0.1:" . $ports[2 * $_ + 1],
        data   => "$dir/m$_.data",
        log    => "$dir/m$_.log",
    } } 0 .. $n - 1;

    my $self = bless {
        dir     => $dir,
        members => \@members,
        token   => "test-$$-" . int(time),
        opt     => \%opt,
        auth    => undef,
    }, $class;

    my %ssl;
    if ($tls) {
        %ssl = (SSL_ca_file => $tls->{ca});
        $ssl{SSL_cert_file} = $opt{client_cert} if $opt{client_cert};
        $ssl{SSL_key_file} = $opt{client_key} if $opt{client_key};
    }
    $self->{http} = HTTP::Tiny->new(timeout => slow(5), verify_SSL => 1,
                                    SSL_options => \%ssl);

    push @Clusters, $self;
    # END blocks run on these too
    for my $sig (qw(INT TERM HUP)) {
        $SIG{$sig} = sub { exit 128 } unless ref $SIG{$sig};
    }
    $self->spawn($_) for 0 .. $n - 1;

    for my $i (0 .. $n - 1) {
        $self->wait_healthy($i, 30)
            or die "etcd member $i is not healthy after 30 s:\n"
                   . $self->logs;
    }
    defined $self->wait_leader(30) or die "etcd has no leader:\n"
                                          . $self->logs;
    return $self;
}


# $count ports from $from on, each free to listen on 127.0.0.1 as etcd
# does (SO_REUSEADDR: an earlier member's TIME_WAIT does not count)
sub free_ports {
    my ($count, $from) = @_;
    my @ports;
    for (my $p = $from; @ports < $count; $p++) {
        die "no free ports from $from on\n" if $p > 65535;
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                      LocalPort => $p, Listen => 1,
                                      ReuseAddr => 1) or next;
        close $s;
        push @ports, $p;
    }
    return @ports;
}


sub spawn {
    my ($self, $i) = @_;
    my $m = $self->{members}[$i];
    my $opt = $self->{opt};
    my $cluster = join ',', map { "$_->{name}=$_->{peer}" }
                                @{ $self->{members} };
    my @cmd = ($Etcd,
        '--name', $m->{name}, '--data-dir', $m->{data},
        '--listen-client-urls', $m->{client},
        '--advertise-client-urls', $m->{client},
        '--listen-peer-urls', $m->{peer},
        '--initial-advertise-peer-urls', $m->{peer},
        '--initial-cluster', $cluster,
        '--initial-cluster-state', 'new',
        '--initial-cluster-token', $self->{token},
        # quick elections, with room for this loaded machine
        '--heartbeat-interval', 50,
        '--election-timeout', int(slow(1000)),
        '--experimental-watch-progress-notify-interval', '2s',
        '--logger', 'zap', '--log-outputs', 'stderr',
        ($opt->{max_txn_ops} ? ('--max-txn-ops', $opt->{max_txn_ops}) : ()),
        ($opt->{max_request_bytes}
         ? ('--max-request-bytes', $opt->{max_request_bytes}) : ()),
        ($opt->{tls} ? ('--cert-file', $opt->{tls}{cert},
                        '--key-file', $opt->{tls}{key},
                        '--trusted-ca-file', $opt->{tls}{ca},
                        '--client-cert-auth') : ()),
        @{ $opt->{flags} // [] });

    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        # dies with the test, whatever kills it (prctl PR_SET_PDEATHSIG)
        syscall(157, 1, 9) if $Config{archname} =~ /^x86_64-linux/;
        open STDIN, '<', '/dev/null' or _exit(126);
        open STDOUT, '>>', $m->{log} or _exit(126);
        open STDERR, '>&', \*STDOUT or _exit(126);
        { exec @cmd };
        print STDERR "exec $Etcd: $!\n";
        _exit(127);
    }
    $m->{pid} = $pid;
}


sub endpoints {
    my $self = shift;
    my @e = map { $_->{client} } @{ $self->{members} };
    return wantarray ? @e : join ',', @e;
}

sub endpoint { $_[0]{members}[$_[1]]{client} }
sub pid      { $_[0]{members}[$_[1]]{pid} }
sub log_file { $_[0]{members}[$_[1]]{log} }

sub logs {
    my $self = shift;
    return join '', map { "--- $_->{log}\n" . substr(slurp($_->{log}), -3000) }
                        @{ $self->{members} };
}


# --- processes ---

sub running {
    my ($self, $i) = @_;
    my $pid = $self->{members}[$i]{pid} or return 0;
    return 0 if waitpid($pid, WNOHANG) == $pid;
    return kill 0, $pid;
}

sub wait_gone {
    my ($self, $i, $secs) = @_;
    my $m = $self->{members}[$i];
    my $deadline = time + slow($secs);
    while ($m->{pid}) {
        if (waitpid($m->{pid}, WNOHANG) == $m->{pid} || !kill 0, $m->{pid}) {
            delete $m->{pid};
            return 1;
        }
        return 0 if time > $deadline;
        sleep 0.05;
    }
    return 1;
}

sub signal_member {
    my ($self, $sig, $i) = @_;
    my $pid = $self->{members}[$i]{pid} or return;
    kill $sig, $pid;
}

sub stop {
    my ($self, $i) = @_;
    $self->signal_member(CONT => $i);
    $self->signal_member(TERM => $i);
    return if $self->wait_gone($i, 10);
    $self->kill9($i);
}

sub kill9 {
    my ($self, $i) = @_;
    $self->signal_member(KILL => $i);
    $self->wait_gone($i, 10) or die "etcd member $i does not die\n";
}

sub pause  { $_[0]->signal_member(STOP => $_[1]) }
sub resume { $_[0]->signal_member(CONT => $_[1]) }

sub restart {
    my ($self, $i) = @_;
    die "etcd member $i still runs\n" if $self->running($i);
    $self->spawn($i);
    $self->wait_healthy($i, 30)
        or die "etcd member $i is not healthy after a restart:\n"
               . $self->logs;
}

# TERM by default (KILL after 10 s); at exit KILL at once: the data is
# the test's, and a member whose peers are gone takes seconds to stop
sub stop_all {
    my ($self, $sig) = @_;
    my @live = grep { $self->{members}[$_]{pid} } 0 .. $#{ $self->{members} };
    $self->signal_member(CONT => $_) for @live;
    $self->signal_member($sig // 'TERM' => $_) for @live;
    for my $i (@live) {
        next if $self->wait_gone($i, 10);
        $self->signal_member(KILL => $i);
        $self->wait_gone($i, 5);
    }
}

sub wait_healthy {
    my ($self, $i, $secs) = @_;
    my $deadline = time + slow($secs);
    my $url = $self->endpoint($i);
    while (time < $deadline) {
        return 0 unless $self->running($i);
        my $r = $self->{http}->get("$url/health");
        return 1 if $r->{success} && $r->{content} =~ /"health":"true"/;
        sleep 0.1;
    }
    return 0;
}


# the index of the member every answering member names as leader
sub leader {
    my $self = shift;
    my %index;
    my @ids;
    for my $i (0 .. $#{ $self->{members} }) {
        my $r = $self->member_call($i, '/v3/maintenance/status', {}) or next;
        next unless $r->{header};
        $index{ $r->{header}{member_id} } = $i;
        push @ids, $r->{leader} if $r->{leader};
    }
    return undef unless @ids;
    my %seen = map { $_ => 1 } @ids;
    return undef if keys %seen != 1;
    return $index{ $ids[0] };
}

sub wait_leader {
    my ($self, $secs) = @_;
    my $deadline = time + slow($secs);
    while (time < $deadline) {
        my $l = $self->leader;
        return $l if defined $l;
        sleep 0.1;
    }
    return undef;
}


# --- the v3 JSON API ---

# as root once auth is on; a token expired (--auth-token-ttl) is renewed
sub member_call {
    my ($self, $i, $path, $body, $renewed) = @_;
    return undef unless $self->running($i);
    my %h = ('Content-Type' => 'application/json');
    my $auth = $self->{auth};
    $h{Authorization} = $auth->{token}
        if $auth && $path !~ m{^/v3/auth/authenticate};
    my $res = $self->{http}->post($self->endpoint($i) . $path,
                                  { headers => \%h,
                                    content => $Json->encode($body) });
    return undef if $res->{status} == 599;
    my $r = eval { $Json->decode($res->{content}) };
    if ($h{Authorization} && !$renewed && ($r->{code} // 0) == 16) {
        my $t = $self->member_call($i, '/v3/auth/authenticate',
                                   { name => 'root',
                                     password => $auth->{password} });
        $auth->{token} = $t->{token} if $t && $t->{token};
        return $self->member_call($i, $path, $body, 1);
    }
    return $r;
}

# the first member that answers
sub call {
    my ($self, $path, $body) = @_;
    for my $i (0 .. $#{ $self->{members} }) {
        my $r = $self->member_call($i, $path, $body);
        next unless defined $r;
        # a member without a leader, or stopping: the next one
        next if ($r->{code} // 0) == 14;
        return $r;
    }
    die "no etcd member answers $path\n";
}

sub checked {
    my ($self, $path, $body) = @_;
    my $r = $self->call($path, $body);
    die "etcd $path: $r->{message}\n" if defined $r->{error};
    return $r;
}

sub b64 { encode_base64($_[0], '') }

sub range_end {
    (my $p = shift) =~ s/(.)\z/chr(ord($1) + 1)/se;
    return $p;
}

sub put {
    my ($self, $key, $value, %opt) = @_;
    my %req = (key => b64($key), value => b64($value));
    $req{lease} = $opt{lease} if $opt{lease};
    return $self->checked('/v3/kv/put', \%req)->{header}{revision};
}

sub get {
    my ($self, $key) = @_;
    my $r = $self->checked('/v3/kv/range', { key => b64($key) });
    return $r->{kvs} ? decode_base64($r->{kvs}[0]{value} // '') : undef;
}

sub mod_revision {
    my ($self, $key) = @_;
    my $r = $self->checked('/v3/kv/range', { key => b64($key) });
    return $r->{kvs} ? $r->{kvs}[0]{mod_revision} : undef;
}

sub remove {
    my ($self, $key) = @_;
    return $self->checked('/v3/kv/deleterange',
                          { key => b64($key) })->{header}{revision};
}

sub remove_prefix {
    my ($self, $prefix) = @_;
    return $self->checked('/v3/kv/deleterange',
                          { key => b64($prefix),
                            range_end => b64(range_end($prefix)) })
                ->{header}{revision};
}

sub range {
    my ($self, $prefix) = @_;
    my $r = $self->checked('/v3/kv/range',
                           { key => b64($prefix),
                             range_end => b64(range_end($prefix)) });
    return { map { decode_base64($_->{key}) => decode_base64($_->{value} // '') }
                 @{ $r->{kvs} // [] } };
}

sub revision {
    my $self = shift;
    return $self->checked('/v3/kv/range', { key => b64("\0") })
                ->{header}{revision};
}

sub compact {
    my ($self, $revision) = @_;
    $self->checked('/v3/kv/compaction',
                   { revision => "$revision", physical => JSON::PP::true });
}

sub lease {
    my ($self, $ttl) = @_;
    return $self->checked('/v3/lease/grant', { TTL => "$ttl" })->{ID};
}


# --- authentication ---

sub enable_auth {
    my ($self, %opt) = @_;
    my $fleet = $opt{fleet} or die "enable_auth: no fleet\n";
    my $prefix = "/gateway/$fleet/";
    my %pw = map { $_ => sprintf('%s-%08x%08x', $_, rand(2**32), rand(2**32)) }
                 qw(root publisher node);

    my $grant = sub {
        my ($role, $type, $p) = @_;
        $self->checked('/v3/auth/role/grant', {
            name => $role,
            perm => { permType => $type, key => b64($p),
                      range_end => b64(range_end($p)) } });
    };
    for my $user (qw(root publisher node)) {
        $self->checked('/v3/auth/user/add',
                       { name => $user, password => $pw{$user} });
        $self->checked('/v3/auth/role/add', { name => $user });
        $self->checked('/v3/auth/user/grant',
                       { user => $user, role => $user });
    }
    $grant->(publisher => READWRITE => $prefix);
    $grant->(node => READ => $prefix);
    $grant->(node => READWRITE => "${prefix}agents/");
    $self->checked('/v3/auth/enable', {});

    my $r = $self->checked('/v3/auth/authenticate',
                           { name => 'root', password => $pw{root} });
    $self->{auth} = { token => $r->{token}, password => $pw{root} };
    return \%pw;
}


# --- TLS material ---

sub make_certs {
    my ($class, $dir) = @_;
    make_path($dir);
    my %f = map { $_ => "$dir/$_.pem" }
                qw(ca ca_key server_cert server_key client_cert client_key);
    write_file("$dir/san.cnf",
               "subjectAltName = IP:127.0.0.1\n"
               . "extendedKeyUsage = serverAuth, clientAuth\n");
    my $quiet = '2>/dev/null';
    my @cmds = (
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca"
        . " -keyout $f{ca_key} -out $f{ca}",
        (map { my ($c, $k, $cn) = @$_;
               ("openssl req -newkey rsa:2048 -nodes -subj /CN=$cn"
                . " -keyout $k -out $c.csr",
                "openssl x509 -req -in $c.csr -CA $f{ca} -CAkey $f{ca_key}"
                . " -CAcreateserial -days 2 -extfile $dir/san.cnf -out $c") }
             [ $f{server_cert}, $f{server_key}, '127.0.0.1' ],
             [ $f{client_cert}, $f{client_key}, 'gateway-client' ]),
    );
    for my $cmd (@cmds) {
        system("$cmd $quiet") == 0 or die "$cmd: failed\n";
    }
    chmod 0644, values %f;
    return { map { $_ => $f{$_} } grep { $_ ne 'ca_key' } keys %f };
}


END {
    if ($$ == $Owner) {
        my $status = $?;
        $_->stop_all('KILL') for @Clusters;
        $? = $status;
    }
}


1;
