package ShippedGateway;

# The gateway as shipped, in a directory of its own: conf/nginx.conf
# rendered and started by gateway/bin/gatewayctl, the way `make start`
# does it, with private copies of the configuration sources (which the
# privileged agent watches) and private routes, modules and sandbox
# roots.
# For the scripts that want the real thing under load or faults:
# bench/soak, bench/reload-under-load, t/060, t/100, t/120-routes-fs.t,
# t/130-operator.t.
#
#   use ShippedGateway;
#
#   my $gw = ShippedGateway->new(base => "$top/build/x", port => 3980);
#   write_file("$gw->{routes}/hello.lua", "ngx.say('hello')\n");
#   $gw->start;                             # dies when it does not start
#   my ($status, $body) = $gw->get('/lua/hello');
#   $gw->stop;                              # at exit in any case
#
# In a checked run (t/TestChecked.pm: a sanitized nginx, or valgrind) the
# copy of nginx.conf keeps the sanitizers' variables, nginx runs through
# the valgrind wrapper, every timeout and wait is scaled by
# TEST_NGINX_SLOWDOWN (the watchdog's limit, gateway_watchdog, too), and
# $gw->reports_ok is the check that no process of the instance reported
# anything.
#
# new() empties `base` and makes base/conf-src (a copy of conf/*.conf:
# nginx.conf and the gateway.conf it includes), base/routes, base/modules,
# base/sandbox and the prefix base/run.  The status listener is on
# port + 1; `workers => N` sets WORKERS (auto by default); `fleet => {
# ETCD => ..., FLEET => ..., NODE => ..., ... }` makes it a node of a
# fleet (gatewayctl's settings, README.md "Fleet").
# `nginx_conf => $text` puts a configuration of the test's own in place
# of the copy of nginx.conf (with `include gateway.conf;`, the shipped
# runtime around the test's servers); `conf => sub { $_[0] =~ ... }`
# edits the copy before the start.  $gw->{conf_text} keeps that text, for
# later edits through set_conf(), which writes it as an editor does.
#
# The helpers for files, time and processes are t/TestGateway/Util.pm's,
# exported from here too.

use strict;
use warnings;

use Cwd qw(realpath);
use Exporter qw(import);
use File::Basename qw(dirname);
use File::Copy qw(copy);
use File::Path qw(make_path remove_tree);
use JSON::PP qw(decode_json);

use lib dirname(realpath(__FILE__));
use TestChecked qw(nginx_wrapper report_files no_reports_ok);
use TestGateway::Socket qw(send_request);
use TestGateway::Util qw(repo_root servroot slow wait_until slurp write_file
                         replace_file alive rss_kib cpu_ticks spawn reap);

our @EXPORT = qw(wait_until slurp write_file replace_file alive
                 children title_of rss_kib cpu_ticks spawn reap servroot);

my $Top = repo_root();

my $Worker = 'nginx: worker process';
my $Agent  = 'nginx: privileged agent process';

# every instance made, to stop it at exit whatever happened (children
# spawned are stopped by t/TestGateway/Util.pm)
my @Started;


sub new {
    my ($class, %opt) = @_;
    my $base = $opt{base} or die "ShippedGateway->new: no base\n";
    my $port = $opt{port} or die "ShippedGateway->new: no port\n";

    my $self = bless {
        top         => $Top,
        base        => $base,
        port        => $port,
        status_port => $port + 1,
        workers     => $opt{workers} // 'auto',
        fleet       => $opt{fleet} // {},
        prefix      => "$base/run",
        src         => "$base/conf-src",
        routes      => "$base/routes",
        modules     => "$base/modules",
        sandbox     => "$base/sandbox",
        nginx       => $opt{nginx} || $ENV{TEST_NGINX_BINARY}
                       || "$Top/build/nginx/sbin/nginx",
    }, $class;
    $self->{pidfile} = "$self->{prefix}/logs/nginx.pid";
    $self->{log}     = "$self->{prefix}/logs/error.log";

    -x $self->{nginx} or die "$self->{nginx} is missing: run 'make' first\n";
    push @Started, $self;

    remove_tree($base);
    my @dirs = @$self{qw(src routes modules sandbox prefix)};
    make_path(@dirs, "$self->{prefix}/logs");
    # workers run as nobody: they must reach the roots
    chmod 0755, $base, @dirs;

    $self->{nginx} = nginx_wrapper($base, "$self->{prefix}/logs",
                                   $self->{nginx});
    $self->{reports_before} = report_files("$self->{prefix}/logs");
    $self->{outputs} = [];      # of gatewayctl: nginx -t's reports

    for my $f (glob "$Top/conf/*.conf") {
        copy($f, $self->{src}) or die "copy $f: $!\n";
    }
    my $text = $opt{nginx_conf} // slurp("$self->{src}/nginx.conf");
    $opt{conf}->($text) if $opt{conf};
    $self->{conf_text} = $text;
    $self->set_conf($text);

    return $self;
}


# the copy of nginx.conf the agent watches, rewritten in place as an
# editor does; in a checked run it keeps the sanitizers' variables
sub set_conf {
    my ($self, $text) = @_;
    $text =~ s/^(\s*gateway_watchdog\s+)(\d+)s;/$1 . slow($2) . 's;'/me;
    write_file("$self->{src}/nginx.conf",
               TestChecked::with_env_directives($text));
}


sub gatewayctl {
    my ($self, $cmd) = @_;
    local $ENV{NGINX_BIN}      = $self->{nginx};
    local $ENV{PREFIX}         = $self->{prefix};
    local $ENV{PORT}           = $self->{port};
    local $ENV{STATUS_PORT}    = $self->{status_port};
    local $ENV{ROUTES}         = $self->{routes};
    local $ENV{MODULES}        = $self->{modules};
    local $ENV{SANDBOX_ROUTES} = $self->{sandbox};
    local $ENV{CONF}           = $self->{src};
    local $ENV{WORKERS}        = $self->{workers};
    local @ENV{keys %{ $self->{fleet} }} = values %{ $self->{fleet} };
    my $out = `cd $Top && gateway/bin/gatewayctl $cmd 2>&1`;
    push @{ $self->{outputs} }, $out;
    return ($? >> 8, $out);
}


# the check of a checked run: no valgrind log of the instance is new, no
# sanitizer report is in its error log or in what gatewayctl printed
sub reports_ok {
    my $self = shift;
    return no_reports_ok('no valgrind or sanitizer report',
                         $self->{reports_before}, ["$self->{prefix}/logs"],
                         $self->read_log, @{ $self->{outputs} });
}


# starts it, and waits until the agent reports itself alive
sub start {
    my $self = shift;
    my ($rc, $out) = $self->gatewayctl('start');
    die "gatewayctl start failed:\n$out" if $rc != 0;
    $self->master or die "no master after gatewayctl start\n";
    wait_until(10, sub { defined $self->status->{agent}{alive_at} })
        or die "the agent does not report itself alive in /status\n";
    return $self;
}


# QUIT, then KILL after 10 s; an interrupted binary upgrade may have left
# an old master beside the new one
sub stop {
    my $self = shift;
    for my $file ("$self->{pidfile}.oldbin", $self->{pidfile}) {
        my $pid = slurp($file);
        chomp $pid;
        next unless $pid =~ /^\d+$/ && alive($pid);
        my @procs = ($pid, children($pid));
        kill QUIT => $pid;
        next if wait_until(10, sub { !grep { alive($_) } @procs });
        kill KILL => @procs;
        wait_until(3, sub { !grep { alive($_) } @procs });
    }
}


sub master {
    my $self = shift;
    my $pid = slurp($self->{pidfile});
    chomp $pid;
    return $pid =~ /^\d+$/ && alive($pid) ? $pid : undef;
}

# the master's workers (not the ones shutting down) and agents
sub workers { my $self = shift; children($self->master // 0, $Worker) }
sub agents  { my $self = shift; children($self->master // 0, $Agent) }


# (status, body) of GET $path, HTTP/1.0 on a connection of its own; the
# path is sent as given (no normalization), one final newline of the
# body is dropped; status 0 when it fails
sub get {
    my ($self, $path, $port) = @_;
    my $r = $self->request("GET $path HTTP/1.0\r\nHost: localhost\r\n\r\n",
                           $port);
    (my $body = $r->{status} ? $r->{body} : $r->{raw}) =~ s/\n\z//;
    return ($r->{status}, $body);
}


# The raw bytes on a connection of their own, as given (no normalization):
# { status, headers => { lc name => value }, body, raw }, status 0 (and
# the reason in raw) when nothing came back.
sub request {
    my ($self, $raw, $port) = @_;
    my $r = send_request($raw, 10, $port // $self->{port});
    return $r if $r->{status};
    return { status => 0, headers => {}, body => '',
             raw => $r->{error} . ($r->{raw} eq '' ? '' : ": $r->{raw}") };
}


# GET /metrics on the status port as { 'name{labels}' => value }, after
# checking the text format line by line; dies when it is not
sub metrics {
    my $self = shift;
    my ($code, $body) = $self->get('/metrics', $self->{status_port});
    die "GET /metrics: $code\n" unless $code == 200;

    my %m;
    for my $line (split /\n/, $body) {
        next if $line =~ /^# (HELP|TYPE) [a-z_]+ /;
        $line =~ /^([a-z_]+(?:\{[a-z_]+="[^"\\\n]*"(?:,[a-z_]+="[^"\\\n]*")*\})?) (\S+)$/
            or die "not Prometheus text: '$line'\n";
        die "a series twice: $1\n" if exists $m{$1};
        $m{$1} = $2;
    }

    return \%m;
}


# GET /status on the status port, decoded; {agent => {}} at least
sub status {
    my $self = shift;
    my ($code, $body) = $self->get('/status', $self->{status_port});
    my $s = $code == 200 ? eval { decode_json($body) } // {} : {};
    $s->{agent} //= {};
    return $s;
}


sub log_size {
    my $self = shift;
    return -s $self->{log} // 0;
}

sub read_log {
    my ($self, $from) = @_;
    my $all = slurp($self->{log});
    return length $all > ($from // 0) ? substr($all, $from // 0) : '';
}


# --- processes ---

# the live children of $ppid, with the process title $title if given
sub children {
    my ($ppid, $title) = @_;
    my @kids = TestGateway::Util::children($ppid);
    @kids = grep { title_of($_) eq $title } @kids if defined $title;
    return @kids;                   # a count in scalar context
}

# the process title (nginx overwrites argv; under valgrind it is told
# from what the process does, see t/TestChecked.pm)
sub title_of {
    return TestChecked::process_title($_[0]);
}


END {
    my $status = $?;
    $_->stop for @Started;
    $? = $status;
}


1;
