# The Debian package (gateway/deb/, gateway/build/make-deb), installed on
# this machine: `make test-deb` runs this file alone, with
# TEST_GATEWAY_DEB=1; elsewhere (`prove -r t/`) it skips, since it
# installs a package system-wide and must not run twice at once.
#
#   - two packages built from build/ (the release's version and a newer
#     one), lintian clean on the first;
#   - dpkg -i: Debian's nginx untouched beside it, the user gateway,
#     systemd-analyze verify on the unit, logrotate's file parsed;
#   - the unit's own command lines, read from the installed unit file and
#     run as systemd would run them (systemd is not PID 1 here):
#     ExecStartPre, ExecStart, on a port of ours set in the conffile
#     /etc/gateway/settings; a route dropped into /var/lib/gateway/routes
#     served; ExecReload applies a changed setting (one worker, new
#     pids); logrotate's USR1 reopens the logs;
#   - dpkg -i of the newer package while wrk runs: postinst swaps the
#     binary (no non-2xx, no socket error), the pid file names the new
#     master, the locally modified conffile is kept;
#   - ExecStop, dpkg --purge: the file lists of /etc, /usr, /var/lib,
#     /var/log and /run are those from before the install; the user
#     gateway stays (Debian policy), and the test removes it when it made
#     it.
# At the end, and on failure halfway, the service is stopped and the
# package purged.

use strict;
use warnings;

use Cwd qw(realpath);
use Fcntl qw(:flock);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use Test::More;
use Time::HiRes qw(sleep time);

use lib dirname(dirname(realpath(__FILE__)));
use TestGateway::Util qw(repo_root servroot slurp write_file wait_until
                         alive children uid_of spawn reap);
use TestGateway::Socket qw(http_request port_open);

plan skip_all => 'installs a package system-wide: make test-deb'
    unless $ENV{TEST_GATEWAY_DEB};
plan skip_all => 'needs root (dpkg -i)' unless $> == 0;

my $Pkg     = 'gateway';
my $Unit    = '/lib/systemd/system/gateway.service';
my $Pidfile = '/run/gateway/nginx.pid';
my $Settings = '/etc/gateway/settings';
my $Routes  = '/var/lib/gateway/routes';
my $Top     = repo_root();

my $port = $ENV{TEST_NGINX_DEB_PORT}
           || ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + 56;
my $status_port = $port + 1;

my $base = servroot('deb');
remove_tree($base);
make_path($base);

# one run at a time on this machine
open my $lock, '>', '/run/lock/gateway-test-deb.lock' or die "lock: $!";
flock($lock, LOCK_EX | LOCK_NB)
    or BAIL_OUT('another make test-deb runs on this machine');

if (installed()) {
    BAIL_OUT("the package $Pkg is installed on this machine: this test "
             . 'would replace it; dpkg --purge it first');
}

my $had_user = getpwnam($Pkg) ? 1 : 0;
# the package's directories, removed at the end if a purge left them
my @Dirs = grep { !-e } qw(/etc/gateway /var/lib/gateway /var/log/gateway
                          /run/gateway);
my $cleanup = 1;

END {
    cleanup() if $cleanup;
}


# --- the packages ---

my $version = `dpkg-parsechangelog -l $Top/gateway/deb/changelog -S Version`;
chomp $version;
my $next = "$version+test1";

my $nginx = $ENV{TEST_NGINX_BINARY} || "$Top/build/nginx/sbin/nginx";
my ($deb, $deb_next) = map {
    my $out = run_out("$Top/gateway/build/make-deb", $nginx, $_->[0],
                      "$base/$_->[1]");
    is($?, 0, "make-deb $_->[0]") or diag($out);
    (split /\n/, $out)[-1];
} [$version, 'release'], [$next, 'next'];
ok(-f $deb && -f $deb_next, 'two packages built') or BAIL_OUT('no package');

my $lintian = run_out('lintian', '--fail-on', 'error,warning', $deb);
is($?, 0, 'lintian: no error or warning') or diag($lintian);


# --- install ---

my @tops = qw(/etc /usr /var/lib /var/log /run);
my $before = snapshot();

my $debian_nginx = '/usr/sbin/nginx';
my $debian_md5 = -e $debian_nginx ? md5($debian_nginx) : '';

my $out = run_out('dpkg', '-i', $deb);
is($?, 0, "dpkg -i $version") or diag($out);
is(status(), "install ok installed $version", 'installed');

ok(getpwnam($Pkg), 'the user gateway exists');
is(-e $debian_nginx ? md5($debian_nginx) : '', $debian_md5,
   "Debian's $debian_nginx untouched");
SKIP: {
    skip "Debian's nginx is not installed", 1 unless -e $debian_nginx;
    my $v = run_out($debian_nginx, '-v');
    like($v, qr{nginx version}, "Debian's nginx runs beside it");
}
like(run_out('/usr/sbin/gateway-nginx', '-V'), qr{nginx version: nginx/1\.22},
     '/usr/sbin/gateway-nginx -V');
is(join(' ', sort map { (split ' ')[0] } grep { /\S/ } split /\n/,
            run_out('dpkg-query', '-W', '-f', '${Conffiles}', $Pkg)),
   '/etc/gateway/fleet /etc/gateway/gateway.conf /etc/gateway/nginx.conf '
   . '/etc/gateway/settings /etc/logrotate.d/gateway', 'the conffiles');

$out = run_out('systemd-analyze', 'verify', $Unit);
is("$? $out", '0 ', 'systemd-analyze verify on the unit');

$out = run_out('logrotate', '-d', '/etc/logrotate.d/gateway');
is($?, 0, 'logrotate parses its file') or diag($out);

my %unit = parse_unit($Unit);
ok($unit{ExecStart} && $unit{ExecReload} && $unit{ExecStop}
   && $unit{ExecStartPre}, 'the unit has ExecStartPre, ExecStart, '
   . 'ExecReload and ExecStop') or BAIL_OUT('unit');

# our ports, two workers: the conffile edited as an operator would
set_settings(PORT => $port, STATUS_PORT => $status_port, WORKERS => 2);


# --- start, as the unit says ---

ok(!port_open($port), "port $port is free") or BAIL_OUT("port $port busy");
ok(run_unit('ExecStartPre') && run_unit('ExecStart'),
   'ExecStartPre and ExecStart') or BAIL_OUT('not started');

my $master;
ok(wait_until(10, sub { ($master = master()) && workers($master) == 2 }),
   'the master (pid file) and 2 workers run') or BAIL_OUT('no master');
my $gateway_uid = (getpwnam($Pkg))[2];
is_deeply([map { uid_of($_) } workers($master)], [$gateway_uid, $gateway_uid],
          'workers run as gateway');

write_file("$Routes/deb-hello.lua", "ngx.say('hello from ', "
           . "ngx.config.prefix())\n");
is(get('/lua/deb-hello'), '200 hello from /var/lib/gateway/',
   'a route dropped into /var/lib/gateway/routes is served');
like(get('/status', $status_port), qr/^200 \{/, 'GET /status');


# --- reload ---

my @old = workers($master);
set_settings(WORKERS => 1);
ok(run_unit('ExecReload'), 'ExecReload');
ok(wait_until(10, sub {
       my @w = workers($master);
       @w == 1 && !grep { my $p = $_; grep { $_ == $p } @old } @w;
   }), 'reloaded: one new worker (WORKERS=1), the same master')
    or diag("workers @{[workers($master)]}, before @old");
is(get('/lua/deb-hello'), '200 hello from /var/lib/gateway/',
   'served after the reload');


# --- logrotate: USR1 reopens the logs ---

$out = run_out('logrotate', '-f', '-s', "$base/logrotate.state",
               '/etc/logrotate.d/gateway');
is($?, 0, 'logrotate -f') or diag($out);
ok(-s '/var/log/gateway/error.log.1', 'error.log rotated');
get('/lua/deb-hello');
ok(wait_until(5, sub { -s '/var/log/gateway/access.log' }),
   'access.log written again after USR1');


# --- upgrade under load ---

SKIP: {
    skip 'wrk is not installed', 9 unless `which wrk` =~ /\S/;

    my $wrk_out = "$base/wrk.out";
    my $wrk = spawn($wrk_out, 'wrk', '-t1', '-c8', '-d12s', '--timeout', '5s',
                    "http://127.0.0.1:$port/lua/deb-hello");
    sleep 1.5;
    my $t0 = time;
    $out = run_out('dpkg', '-i', $deb_next);
    my $took = time - $t0;
    is($?, 0, "dpkg -i $next under load") or diag($out);
    note($out);
    my $rc = reap($wrk, 30);
    ok(defined $rc && $rc == 0, 'wrk ran') or diag(slurp($wrk_out));
    ok($took < 10, sprintf('dpkg -i finished while wrk ran (%.1f s)', $took));

    my $w = slurp($wrk_out);
    my ($n) = $w =~ /^\s*(\d+) requests in/m;
    my ($non2xx) = $w =~ /Non-2xx or 3xx responses:\s*(\d+)/;
    my @sock = $w =~ /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/;
    ok($n && $n > 100, "wrk: @{[$n // 0]} requests") or diag($w);
    note($w);
    is($non2xx // 0, 0, 'no non-2xx response during the upgrade') or diag($w);
    is(eval { my $s = 0; $s += $_ for @sock; $s } // 0, 0,
       'no socket error during the upgrade') or diag($w);

    is(status(), "install ok installed $next", "upgraded to $next");
    my $new = master();
    ok($new && $new != $master && !alive($master),
       'a new master, the old one gone') or diag("new @{[$new // '-']}");
    is(readlink("/proc/$new/exe"), '/usr/sbin/gateway-nginx',
       "the new master runs the installed binary");
    $master = $new;
}

like(slurp($Settings), qr/^PORT=$port$/m,
     'the locally modified conffile is kept');
is(get('/lua/deb-hello'), '200 hello from /var/lib/gateway/',
   'served after the upgrade');


# --- stop, purge ---

ok(run_unit('ExecStop'), 'ExecStop');
ok(wait_until(45, sub { !alive($master) && !gateway_processes() }),
   'the master and its processes are gone');
ok(!port_open($port), "port $port closed");

$out = run_out('dpkg', '--purge', $Pkg);
is($?, 0, 'dpkg --purge') or diag($out);
ok(!installed(), 'not installed');

my $after = snapshot();
my @added = grep { !$before->{$_} } sort keys %$after;
my @removed = grep { !$after->{$_} } sort keys %$before;
is("@added", '', 'nothing is left behind');
is("@removed", '', 'nothing is missing');
ok(getpwnam($Pkg), 'the user gateway stays (policy: files may be its)');
remove_user() unless $had_user;

$cleanup = 0;
remove_tree(grep { -e } @Dirs);    # what a faulty purge left
done_testing();


# --- helpers ---

sub run_out {
    my @cmd = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if (!$pid) {
        open STDERR, '>&', \*STDOUT;
        open STDIN, '<', '/dev/null';
        exec @cmd or die "exec $cmd[0]: $!\n";
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return $out;
}

sub md5 { (split ' ', run_out('md5sum', $_[0]))[0] }

sub installed { status() =~ / installed/ }

sub status {
    my $s = run_out('dpkg-query', '-W', '-f', '${Status} ${Version}', $Pkg);
    return $? == 0 ? $s : '';
}

# every path under the tops, but dpkg's and apt's own bookkeeping
sub snapshot {
    my %paths;
    for (split /\n/, run_out('find', @tops, '-xdev')) {
        next if m{^/var/lib/(dpkg/updates|apt/lists)/}
                || m{^/var/(cache|log/journal)/}
                || m{^/run/(lock|user|systemd/transient)/};
        $paths{$_} = 1;
    }
    return \%paths;
}

# KEY=value in /etc/gateway/settings, the rest of it as it is
sub set_settings {
    my %set = @_;
    my $text = slurp($Settings);
    for my $k (sort keys %set) {
        $text =~ s/^$k=.*$/$k=$set{$k}/m or $text .= "$k=$set{$k}\n";
    }
    write_file($Settings, $text);
}

# ExecStartPre=, ExecStart=, ... as lists of [ignore_failure, argv...]
sub parse_unit {
    my ($file) = @_;
    my (%u, $section);
    for (split /\n/, slurp($file)) {
        next if /^\s*([#;]|$)/;
        if (/^\[(\w+)\]/) { $section = $1; next }
        next unless $section eq 'Service' && /^(Exec\w+)=(.*)$/;
        my ($key, $line) = ($1, $2);
        # systemd's prefixes: '-' ignores a failure; others we refuse
        $line =~ s/^([-\@:+!]*)//;
        my $prefix = $1;
        die "$file: $key: prefix '$prefix' not handled\n"
            if $prefix =~ /[^-]/;
        die "$file: $key: specifiers, variables or quotes not handled\n"
            if $line =~ /[%\$\\"']/;
        push @{ $u{$key} }, [$prefix eq '-' ? 1 : 0, split ' ', $line];
    }
    return %u;
}

# the unit's commands of $key, in systemd's environment; 1 if all
# succeeded (or may fail)
sub run_unit {
    my ($key) = @_;
    for my $cmd (@{ $unit{$key} }) {
        my ($may_fail, @argv) = @$cmd;
        local %ENV = (PATH => '/usr/local/sbin:/usr/local/bin:/usr/sbin:'
                              . '/usr/bin:/sbin:/bin', LANG => 'C.UTF-8');
        my $out = run_out(@argv);
        next if $? == 0 || $may_fail;
        diag("$key: @argv: exit @{[$? >> 8]}\n$out");
        return 0;
    }
    return 1;
}

sub master {
    my $pid = -s $Pidfile ? slurp($Pidfile) : '';
    chomp $pid;
    return $pid && alive($pid) ? $pid : undef;
}

sub workers {
    my ($m) = @_;
    return grep { slurp("/proc/$_/cmdline") =~ /^nginx: worker process/ }
           children($m);
}

# the processes of the package's binary, whatever their parent
sub gateway_processes {
    return grep { (slurp("/proc/$_/comm") // '') eq "gateway-nginx\n" }
           map { m{/proc/(\d+)/} } glob '/proc/[0-9]*/comm';
}

sub get {
    my ($uri, $p) = @_;
    my $res = http_request("GET $uri", 5, $p || $port);
    return $res->{error} ? "error $res->{error}" : "$res->{status} $res->{body}"
        =~ s/\n\z//r;
}

sub remove_user {
    run_out('deluser', '--system', '--quiet', $Pkg);
    run_out('delgroup', '--system', '--quiet', $Pkg) if getgrnam($Pkg);
}

# the machine as it was: the service stopped, the package purged
sub cleanup {
    diag('cleaning up: stopping the service, purging the package');
    if (my $m = master()) {
        kill 'QUIT', $m;
        wait_until(40, sub { !alive($m) }) or kill 'KILL', $m;
    }
    kill 'KILL', gateway_processes();
    run_out('dpkg', '--purge', $Pkg) if installed();
    remove_tree(grep { -e } @Dirs);
    remove_user() if !$had_user && getpwnam($Pkg);
}
