package TestGateway::Util;

# Files, time and processes, for the harness (t/TestGateway.pm), the
# scripts that start the gateway as shipped (t/ShippedGateway.pm) and the
# test files' own code: no nginx configuration, no sockets.
#
#   use TestGateway::Util qw(slurp write_file wait_until);
#
# The kind of run is decided here, once: TEST_NGINX_USE_VALGRIND=1 or a
# sanitizer's variable (ASAN_OPTIONS, UBSAN_OPTIONS) makes a checked run
# (what it changes is in t/TestChecked.pm), and TEST_NGINX_SLOWDOWN, 20
# under valgrind, 2 with a sanitizer and 1 otherwise unless given, scales
# every timeout and wait (slow(), wait_until()).

use strict;
use warnings;

use Cwd qw(realpath);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use POSIX qw(WNOHANG _exit);
use Time::HiRes qw(sleep time);

use base 'Exporter';
our @EXPORT_OK = qw(repo_root servroot slow checked
                    slurp write_file replace_file rewrite_file printable
                    wait_until alive children uid_of rss_kib cpu_ticks
                    listening_inodes listening_of spawn reap);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

my $RepoRoot = realpath(dirname(realpath(__FILE__)) . '/../..');

our @SanitizerVars = qw(ASAN_OPTIONS UBSAN_OPTIONS);
our $Valgrind = $ENV{TEST_NGINX_USE_VALGRIND} ? 1 : 0;
my $Sanitized = grep { defined $ENV{$_} } @SanitizerVars;

our $Slowdown = $ENV{TEST_NGINX_SLOWDOWN}
                || ($Valgrind ? 20 : $Sanitized ? 2 : 1);

# configurations may use $TEST_NGINX_SLOWDOWN (e.g. a sandbox's time budget)
$ENV{TEST_NGINX_SLOWDOWN} = $Slowdown;

# children spawned and not reaped, stopped at exit
my @Spawned;


# --- the run ---

sub repo_root () { $RepoRoot }

# the server root of t/TestGateway.pm, t/servroot unless
# TEST_NGINX_SERVROOT is set; with a $name, the base of a file's own
# instance beside it (t/servroot-<name>)
sub servroot {
    my ($name) = @_;
    my $root = $ENV{TEST_NGINX_SERVROOT} || "$RepoRoot/t/servroot";
    return defined $name ? "$root-$name" : $root;
}

sub slow ($) {
    return $_[0] * $Slowdown;
}

# a run that checks for reports: valgrind, or a sanitized nginx
sub checked () {
    return $Valgrind || $Sanitized;
}


# --- files ---

sub slurp {
    my ($path) = @_;
    open my $fh, '<:raw', $path or return '';
    local $/;
    return scalar(<$fh>) // '';
}

# Writes $content to $path, making the directories on the way; files are
# 0644 unless $mode is given, directories 0755: workers run as nobody.
sub write_file {
    my ($path, $content, $mode) = @_;
    # make_path honours the umask; say 0755 explicitly for nobody
    chmod 0755, make_path(dirname($path));
    open my $fh, '>:raw', $path or die "cannot write $path: $!\n";
    print $fh $content;
    close $fh or die "cannot write $path: $!\n";
    chmod $mode // 0644, $path;
}

# a temporary file renamed over the target: the way editors and deploy
# tools replace a script
sub replace_file {
    my ($path, $content) = @_;
    write_file("$path.tmp", $content);
    rename "$path.tmp", $path or die "rename $path.tmp: $!\n";
}

# rewritten in place: opened with truncation and written (the inode and
# the mode stay)
sub rewrite_file {
    my ($path, $content) = @_;
    open my $fh, '>:raw', $path or die "open $path: $!\n";
    print $fh $content;
    close $fh or die "close $path: $!\n";
}

# for test names and diagnostics: other bytes as \xNN, 200 at the most
sub printable {
    my $s = "" . shift;
    $s =~ s/([^\x20-\x7e])/sprintf '\\x%02x', ord $1/ge;
    return length $s > 200 ? substr($s, 0, 200) . '...' : $s;
}


# --- time ---

# $cond->() until it is true (1) or $secs times TEST_NGINX_SLOWDOWN have
# passed (0)
sub wait_until {
    my ($secs, $cond) = @_;
    my $deadline = time + slow($secs);
    while (1) {
        return 1 if $cond->();
        return 0 if time > $deadline;
        sleep 0.02;
    }
}


# --- processes, from /proc ---

# a zombie counts as gone: the daemonized master's parent may not reap
sub alive {
    my $pid = shift;
    return 0 unless $pid && kill 0, $pid;
    return slurp("/proc/$pid/stat") =~ /\)\s+Z\s/ ? 0 : 1;
}

# the live children of $ppid, in pid order (a count in scalar context)
sub children {
    my ($ppid) = @_;
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        my ($pid, $state, $parent) = slurp($stat) =~ /^(\d+) .*\) (\S) (\d+) /s
            or next;
        push @kids, $pid if $state ne 'Z' && $parent == $ppid;
    }
    @kids = sort { $a <=> $b } @kids;
    return @kids;
}

# the real uid
sub uid_of {
    my $pid = shift;
    return slurp("/proc/$pid/status") =~ /^Uid:\s+(\d+)/m ? $1 : '?';
}

sub rss_kib {
    return slurp("/proc/$_[0]/status") =~ /^VmRSS:\s+(\d+) kB/m ? $1 : 0;
}

# utime + stime, in clock ticks
sub cpu_ticks {
    my @f = split ' ', (slurp("/proc/$_[0]/stat") =~ /\) (.*)/s)[0] // '';
    return @f > 12 ? $f[11] + $f[12] : 0;
}

# the inodes of the listening sockets, as { inode => 1 }: TCP state 0A
# in /proc/net/tcp and tcp6, unix sockets flagged __SO_ACCEPTCON
sub listening_inodes {
    my %inodes;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        for (split /\n/, slurp($f)) {
            my @f = split ' ';
            $inodes{$f[9]} = 1 if @f > 9 && $f[3] eq '0A';
        }
    }
    for (split /\n/, slurp('/proc/net/unix')) {
        my @f = split ' ';
        $inodes{$f[6]} = 1 if @f > 6 && $f[3] =~ /^0*10000$/;
    }
    return \%inodes;
}

# the inodes of the listening sockets $pid holds (a count in scalar
# context)
sub listening_of {
    my $pid = shift;
    my $listening = listening_inodes();
    my @l;
    for my $fd (glob "/proc/$pid/fd/*") {
        my $target = readlink $fd // next;
        push @l, $1 if $target =~ /^socket:\[(\d+)\]$/ && $listening->{$1};
    }
    return @l;
}

# Runs @cmd, or a code ref, in a child process with stdin from /dev/null
# and stdout and stderr to the file $out.  Stopped (TERM) at exit unless
# reaped.
sub spawn {
    my ($out, @cmd) = @_;
    my $pid = fork // die "fork: $!\n";
    if ($pid) {
        push @Spawned, $pid;
        return $pid;
    }

    # the child: never the parent's END blocks, which stop nginx
    $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP);
    open STDIN, '<', '/dev/null' or _exit(126);
    open STDOUT, '>', $out or _exit(126);
    open STDERR, '>&', \*STDOUT or _exit(126);
    $| = 1;                         # _exit() flushes nothing
    if (ref $cmd[0] eq 'CODE') {
        my $ok = eval { $cmd[0]->(); 1 };
        print STDERR $@ unless $ok;
        _exit($ok ? 0 : 1);
    }
    { exec @cmd };
    print STDERR "exec $cmd[0]: $!\n";
    _exit(127);
}

# waits up to $secs (scaled) for a spawned child to end; its exit code,
# or undef
sub reap {
    my ($pid, $secs) = @_;
    my $status;
    wait_until($secs, sub {
        return 0 unless waitpid($pid, WNOHANG) == $pid;
        $status = $?;
        return 1;
    }) or return undef;
    @Spawned = grep { $_ != $pid } @Spawned;
    return $status >> 8;
}


END {
    my $status = $?;
    kill TERM => @Spawned;
    waitpid $_, 0 for @Spawned;
    $? = $status;
}


1;
