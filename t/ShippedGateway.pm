package ShippedGateway;

# The gateway as shipped, for the tests that run it whole: conf/nginx.conf
# rendered by gateway/bin/render-conf and started by gateway/bin/gatewayctl
# (the way `make start` does), with a routes root, a modules tree, a
# sandbox root and a copy of conf/ of its own (conf-src/, watched by the
# privileged agent) under t/servroot-<name>/, the instance's prefix.
#
#   my $gw = ShippedGateway->new(name => 'operator', port => 1994,
#                                workers => 2);
#   $gw->write('routes/hello.lua', 'ngx.say("hello")');
#   $gw->start;
#   my $r = $gw->get('/lua/hello');     # { status, headers, body, raw }
#   my $m = $gw->metrics;               # 'name{labels}' => value
#   $gw->stop;                          # also at exit, whatever happens
#
# Requests go over a new loopback connection each, with the bytes given:
# nothing is normalized on the way.

use strict;
use warnings;

use Cwd qw(realpath);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use IO::Socket::INET;
use JSON::PP ();
use Time::HiRes qw(sleep time);

my $Top = realpath(dirname(realpath(__FILE__)) . '/..');
my @Instances;

sub new {
    my ($class, %o) = @_;

    my $prefix = "$Top/t/servroot-$o{name}";
    my $self = bless {
        prefix      => $prefix,
        port        => $o{port},
        status_port => $o{port} + 1,
        workers     => $o{workers} // 'auto',
        nginx       => $ENV{TEST_NGINX_BINARY}
                       || "$Top/build/nginx/sbin/nginx",
    }, $class;

    remove_tree($prefix);
    for my $d (qw(routes lib sandbox conf-src)) {
        make_path("$prefix/$d");
        chmod 0755, "$prefix/$d";
    }
    chmod 0755, $prefix;

    # a copy of conf/, so that a test may edit what the agent watches
    for my $f (glob "$Top/conf/*.conf") {
        $self->write('conf-src/' . (split m{/}, $f)[-1], slurp($f));
    }

    push @Instances, $self;
    return $self;
}

sub prefix      { $_[0]{prefix} }
sub port        { $_[0]{port} }
sub status_port { $_[0]{status_port} }

sub gatewayctl {
    my ($self, $cmd) = @_;

    my $p = $self->{prefix};
    local @ENV{qw(NGINX_BIN PREFIX PORT STATUS_PORT ROUTES LIB
                  SANDBOX_ROUTES CONF WORKERS)} =
        ($self->{nginx}, $p, $self->{port}, $self->{status_port},
         "$p/routes", "$p/lib", "$p/sandbox", "$p/conf-src", $self->{workers});

    my $out = `cd $Top && gateway/bin/gatewayctl $cmd 2>&1`;
    return ($? >> 8, $out);
}

sub start {
    my ($self) = @_;

    my ($rc, $out) = $self->gatewayctl('start');
    die "gatewayctl start failed: $out" if $rc;

    # the workers and the agent are up when both listeners answer
    $self->wait_until(sub { $self->get('/status', $self->{status_port})
                                ->{status} == 200 }, 10)
        or die "the gateway does not answer\n";
}

sub stop {
    my ($self) = @_;
    return unless $self->master_pid;
    my ($rc, $out) = $self->gatewayctl('stop');
    warn "gatewayctl stop failed: $out" if $rc;
}

END {
    my $rc = $?;
    $_->stop for @Instances;
    $? = $rc;
}

sub master_pid {
    my ($self) = @_;
    my $pid = slurp("$self->{prefix}/logs/nginx.pid") or return 0;
    chomp $pid;
    return kill(0, $pid) ? $pid : 0;
}

# the worker processes' pids, from the master's children
sub worker_pids {
    my ($self) = @_;
    my $master = $self->master_pid or return ();
    my @pids;

    for my $stat (glob '/proc/[0-9]*/stat') {
        my $s = slurp($stat) or next;
        my ($pid, $ppid) = $s =~ /^(\d+) \(.*\) \S (\d+)/s or next;
        next unless $ppid == $master;
        my $cmd = slurp("/proc/$pid/cmdline") // '';
        push @pids, $pid if $cmd =~ /worker process/;
    }

    return sort { $a <=> $b } @pids;
}

# Sends the raw bytes, returns { status, headers => { lc name => value },
# body, raw }; status 0 when nothing came back.
sub request {
    my ($self, $raw, $port) = @_;

    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:'
                                              . ($port // $self->{port}),
                                  Timeout => 10)
        or return { status => 0, headers => {}, body => '',
                    raw => "connect: $!" };
    print $s $raw;
    my $r = do { local $/; <$s> } // '';
    close $s;

    my ($head, $body) = split /\r\n\r\n/, $r, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.\d (\d{3})};
    my %h;
    for (split /\r\n/, $head // '') {
        $h{lc $1} = $2 if /^([^:\s]+):\s*(.*)$/;
    }

    return { status => $status // 0, headers => \%h, body => $body // '',
             raw => $r };
}

sub get {
    my ($self, $path, $port) = @_;
    return $self->request("GET $path HTTP/1.0\r\nHost: localhost\r\n\r\n",
                          $port);
}

sub status {
    my ($self) = @_;
    my $r = $self->get('/status', $self->{status_port});
    die "GET /status: $r->{status}\n" unless $r->{status} == 200;
    return JSON::PP::decode_json($r->{body});
}

# GET /metrics as { 'name{labels}' => value }, after checking the text
# format line by line
sub metrics {
    my ($self) = @_;
    my $r = $self->get('/metrics', $self->{status_port});
    die "GET /metrics: $r->{status}\n" unless $r->{status} == 200;

    my %m;
    for my $line (split /\n/, $r->{body}) {
        next if $line =~ /^# (HELP|TYPE) [a-z_]+ /;
        $line =~ /^([a-z_]+(?:\{[a-z_]+="[^"\\\n]*"(?:,[a-z_]+="[^"\\\n]*")*\})?) (\S+)$/
            or die "not Prometheus text: '$line'\n";
        die "a series twice: $1\n" if exists $m{$1};
        $m{$1} = $2;
    }

    return \%m;
}

# writes under the prefix, readable by the workers (user nobody)
sub write {
    my ($self, $path, $data) = @_;
    my $full = "$self->{prefix}/$path";
    make_path(dirname($full));
    open my $fh, '>', "$full.tmp" or die "$full.tmp: $!";
    print $fh $data;
    close $fh;
    chmod 0644, "$full.tmp";
    rename "$full.tmp", $full or die "rename $full: $!";
}

sub error_log {
    my ($self) = @_;
    return slurp("$self->{prefix}/logs/error.log") // '';
}

sub wait_until {
    my ($self, $cond, $seconds) = @_;
    my $end = time + $seconds;
    while (time < $end) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return $cond->();
}

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return undef;
    local $/;
    return scalar <$fh>;
}

1;
