package BenchGateway;

# What the benchmarks share: an nginx of our build with one worker,
# running the gateway's runtime as shipped (conf/gateway.conf, rendered
# by gateway/bin/render-conf and included) with the locations a bench
# compares, and the measures taken on it: wrk runs, the worker's CPU
# time, medians and paired ratios.
#
#   use FindBin;
#   use lib $FindBin::Bin;
#   use BenchGateway qw(options median ratios route_location);
#
#   my %opt = options(rounds => 10, duration => 3, connections => 32,
#                     port => 8990);     # --rounds N ... from @ARGV
#   my $bench = BenchGateway->new(name => 'fresh', port => $opt{port});
#   $bench->start(server => route_location(path => '/lua/', ...));
#   my $runs = $bench->rounds(%opt, variants => [[fresh => '/lua/hello'],
#                                                ...]);
#   $bench->stop;                       # at exit in any case
#
# new() empties build/bench/<name>/, the prefix; the bench puts its
# scripts there before start().  start() renders conf/gateway.conf into
# the prefix from a copy of its own (the privileged agent watches that
# copy, which nobody edits), writes a conf/nginx.conf around it and
# starts nginx.

use strict;
use warnings;

use Cwd qw(realpath);
use Exporter qw(import);
use File::Basename qw(dirname);
use File::Copy qw(copy);
use File::Path qw(make_path remove_tree);
use Getopt::Long qw(GetOptions);
use IO::Socket::INET;
use POSIX qw(sysconf _SC_CLK_TCK);
use Time::HiRes qw(sleep);

# the tests' helpers for files and processes
use lib realpath(dirname(realpath(__FILE__)) . '/../t');
use TestGateway::Util qw(slurp write_file cpu_ticks);

our @EXPORT_OK = qw(options summary median ratios cpu_us p99_ms cpu_ticks
                    slurp write_file route_map route_location);

our $Root = realpath(dirname(realpath(__FILE__)) . '/..');

my $Tck = sysconf(_SC_CLK_TCK);

# every instance started, to stop them at exit whatever happened
my @Started;


# The options of a bench of rounds, from @ARGV, over the defaults given:
# { rounds, duration, connections, port, verbose }; dies with the usage.
sub options {
    my %opt = (verbose => 0, @_);

    GetOptions(\%opt, 'rounds=i', 'duration=i', 'connections=i', 'port=i',
               'verbose')
        or die "usage: $0 [--rounds N] [--duration S] [--connections C]"
               . " [--port P] [--verbose]\n";

    return %opt;
}


# name: the prefix is build/bench/<name>; port: the listener's;
# routes, modules, sandbox: the roots (routes/, modules/ and sandbox/
# of this checkout by default; a relative one is made in the prefix)
sub new {
    my ($class, %opt) = @_;

    my $self = bless {
        nginx   => "$Root/build/nginx/sbin/nginx",
        prefix  => "$Root/build/bench/$opt{name}",
        port    => $opt{port},
        routes  => "$Root/routes",
        modules => "$Root/modules",
        sandbox => "$Root/sandbox",
        %opt,
    }, $class;

    $self->{pidfile} = "$self->{prefix}/logs/nginx.pid";

    -x $self->{nginx} or die "$self->{nginx} is missing: run 'make' first\n";

    # stop nginx however we leave: an error, ^C, a kill
    $SIG{INT} = $SIG{TERM} = $SIG{HUP} = sub { die "interrupted\n" };

    remove_tree($self->{prefix});
    make_path("$self->{prefix}/conf", "$self->{prefix}/logs");
    # workers run as nobody when we are root
    chmod 0755, $self->{prefix};

    for my $root (@$self{qw(routes modules sandbox)}) {
        next if $root =~ m{^/};
        $root = "$self->{prefix}/$root";
        make_path($root);
        chmod 0755, $root;
    }

    return $self;
}


# Starts nginx with conf/gateway.conf and, in the http block, $opt{http}
# (maps) and one server on 127.0.0.1:port with $opt{server} (locations);
# error_log => level (error), connections => worker_connections (1024),
# env => { NAME => value } for nginx, wait => seconds it has to answer
# (5).  Dies when it does not answer.
sub start {
    my ($self, %opt) = @_;
    my $prefix = $self->{prefix};
    my $src = "$prefix/conf-src";

    make_path($src);
    copy("$Root/conf/gateway.conf", $src) or die "copy gateway.conf: $!\n";
    system("$Root/gateway/bin/render-conf", $src, $prefix, $self->{port},
           $self->{port} + 1, $self->{routes}, $self->{modules},
           $self->{sandbox}, 1) == 0
        or die "render-conf failed\n";

    my $level = $opt{error_log} // 'error';
    my $connections = $opt{connections} // 1024;
    my $http = $opt{http} // '';
    (my $server = $opt{server} // '') =~ s/\n+\z/\n/;

    write_file("$prefix/conf/nginx.conf", <<"EOF");
worker_processes  1;
error_log  logs/error.log $level;
pid        logs/nginx.pid;

events {
    worker_connections  $connections;
}

http {
    access_log  off;

    include  gateway.conf;

$http
    server {
        listen  127.0.0.1:$self->{port};
        default_type  text/plain;

        route_guard_root  $self->{routes};

$server
    }
}
EOF

    {
        local @ENV{keys %{ $opt{env} // {} }} = values %{ $opt{env} // {} };
        system($self->{nginx}, '-p', "$prefix/", '-c', 'conf/nginx.conf') == 0
            or die "nginx failed to start (is port $self->{port} busy?)\n";
    }
    push @Started, $self;

    for (1 .. ($opt{wait} // 5) * 10) {
        return $self if IO::Socket::INET->new(
                            PeerAddr => "127.0.0.1:$self->{port}");
        sleep 0.1;
    }

    die "nginx does not answer on port $self->{port}\n";
}


# QUIT, then KILL after 10 s
sub stop {
    my $self = shift;
    my $pid = $self->master or return;

    kill 'QUIT', $pid;

    for (1 .. 100) {
        return unlink $self->{pidfile} unless kill 0, $pid;
        sleep 0.1;
    }

    kill 'KILL', $pid;
    unlink $self->{pidfile};
}


sub master {
    my $self = shift;
    chomp(my $pid = slurp($self->{pidfile}));
    return $pid =~ /^\d+$/ ? $pid : undef;
}


# the worker, not the cache manager or the privileged agent
sub worker {
    my $self = shift;
    my $master = $self->master or die "no nginx master\n";

    for (1 .. 50) {
        for my $task (glob "/proc/[0-9]*/stat") {
            my ($pid, $ppid) = slurp($task) =~ /^(\d+) \(.*\) \S+ (\d+)/s
                or next;
            return $pid if $ppid == $master
                           && slurp("/proc/$pid/cmdline") =~ /worker process/;
        }
        sleep 0.1;
    }

    die "no nginx worker found\n";
}


sub error_log {
    my $self = shift;
    return slurp("$self->{prefix}/logs/error.log");
}


# wrk on $uri for $seconds with $connections: { requests, rps, p99 (ms),
# non2xx, socket_errors }
sub wrk {
    my ($self, $uri, $seconds, $connections) = @_;

    my $out = `wrk -t1 -c$connections -d${seconds}s --latency --timeout 5s http://127.0.0.1:$self->{port}$uri 2>&1`;
    $? == 0 or die "wrk failed:\n$out";

    my %r = (non2xx => 0, socket_errors => 0);

    ($r{requests}) = $out =~ /^\s*(\d+) requests in/m
        or die "cannot parse wrk output:\n$out";
    ($r{rps}) = $out =~ /^Requests\/sec:\s*([\d.]+)/m;
    $r{p99} = p99_ms($out) // die "no p99 in wrk output\n";

    if ($out =~ /Non-2xx or 3xx responses:\s*(\d+)/) {
        $r{non2xx} = $1;
    }

    if ($out =~ /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/) {
        $r{socket_errors} = $1 + $2 + $3 + $4;
    }

    return \%r;
}


# Each variant ([name, uri]) warmed up for a second (code cache, JIT,
# page cache) and checked for errors, then `rounds` rounds of wrk over
# the variants, every other round in reverse order, so that a drift of
# the machine over a round favours no variant.  Each run gets the
# worker's CPU ticks over it (cpu): the worker must live to the end.
# strict: a round with errors dies.  Returns { name => [ the runs, round
# by round ] }.
sub rounds {
    my ($self, %opt) = @_;
    my @variants = @{ $opt{variants} };
    my ($duration, $connections) = @opt{qw(duration connections)};
    my $worker = $self->worker;
    my %runs;

    for my $v (@variants) {
        my ($name, $uri) = @$v;
        my $r = $self->wrk($uri, 1, $connections);
        $r->{non2xx} || $r->{socket_errors}
            and die "$name: warm-up got errors\n";
    }

    for my $round (1 .. $opt{rounds}) {
        for my $v ($round % 2 ? @variants : reverse @variants) {
            my ($name, $uri) = @$v;
            my $cpu0 = cpu_ticks($worker);
            my $r = $self->wrk($uri, $duration, $connections);
            $r->{cpu} = cpu_ticks($worker) - $cpu0;
            $opt{strict} && ($r->{non2xx} || $r->{socket_errors})
                and die "$name: round $round got errors\n";
            push @{ $runs{$name} }, $r;
            printf STDERR "round %d %-16s %8.0f req/s  p99 %.3f ms\n",
                          $round, $name, $r->{rps}, $r->{p99}
                if $opt{verbose};
        }
    }

    $self->worker == $worker
        or die "the worker changed during the run: it died\n";

    return \%runs;
}


# one request on a new connection: the body of a 200, or die
sub get {
    my ($self, $uri) = @_;

    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$self->{port}",
                                  Timeout => 5)
        or die "connect: $!\n";
    print $s "GET $uri HTTP/1.0\r\nHost: localhost\r\n\r\n";
    my $res = do { local $/; <$s> } // '';
    close $s;

    $res =~ m{^HTTP/1\.\d 200 .*?\r\n\r\n(.*)\z}s
        or die "GET $uri: not a 200: $res\n";
    return $1;
}


# --- the configuration of the variants ---

# the shipped $lua_route map's twin for another path: the raw route name
# after $path in $var
sub route_map {
    my ($path, $var) = @_;
    return <<"EOF";
    map \$request_uri \$$var {
        "~^$path(?<name>[^?]*)"  \$name;
        default  "";
    }
EOF
}

# a route location as conf/nginx.conf writes them: path, route (the
# guard's name), content (the handler's call), metrics (route_metrics'
# tree, none when not given), root (route_guard_root, when not the
# server's)
sub route_location {
    my (%o) = @_;
    my $root = $o{root} ? "    route_guard_root  $o{root};\n" : '';
    my $metrics = $o{metrics} ? "    route_metrics  $o{metrics};\n" : '';
    return <<"EOF" =~ s/^/        /mgr;
location $o{path} {
    route_guard  $o{route};
$root$metrics    content_by_lua_block  { $o{content} }
}
EOF
}


# --- figures ---

# Prints a line per variant: requests/s and p99 (medians over the
# rounds), the worker's CPU time per request, the errors; returns
# { name => { rps, p99, cpu } }.
sub summary {
    my ($variants, $runs) = @_;
    my %summary;

    printf "%-10s %12s %10s %14s %10s\n",
           'variant', 'requests/s', 'p99 ms', 'cpu us/req', 'errors';

    for my $v (@$variants) {
        my $name = $v->[0];
        my @r = @{ $runs->{$name} };
        my $errors = 0;
        $errors += $_->{non2xx} + $_->{socket_errors} for @r;

        my $s = $summary{$name} = {
            rps => median(map { $_->{rps} } @r),
            p99 => median(map { $_->{p99} } @r),
            cpu => cpu_us(@r),
        };

        printf "%-10s %12.0f %10.3f %14.2f %10d\n",
               $name, $s->{rps}, $s->{p99}, $s->{cpu}, $errors;
    }

    return \%summary;
}

sub median {
    my @s = sort { $a <=> $b } @_;
    return 0 unless @s;
    return @s % 2 ? $s[$#s / 2] : ($s[@s / 2 - 1] + $s[@s / 2]) / 2;
}

# the ratios of $key (rps, p99) of two variants' runs, round by round:
# the two run back to back, under the same conditions
sub ratios {
    my ($x, $y, $key) = @_;
    return map { $x->[$_]{$key} / $y->[$_]{$key} } 0 .. $#$x;
}

# the worker's CPU time per request over runs, in microseconds
sub cpu_us {
    my ($requests, $ticks) = (0, 0);
    $requests += $_->{requests}, $ticks += $_->{cpu} for @_;
    return $ticks / $Tck / $requests * 1e6;
}

# wrk's 99th percentile latency in ms ("99%   12.34ms"), undef if absent
sub p99_ms {
    my ($out) = @_;
    my ($n, $unit) = $out =~ /^\s*99%\s+([\d.]+)(us|ms|s)\b/m or return;
    return $unit eq 'us' ? $n / 1000 : $unit eq 's' ? $n * 1000 : $n;
}


END {
    my $status = $?;
    $_->stop for @Started;
    $? = $status;
}


1;
