# The routes root on a read-only, then a full file system: the gateway as
# shipped (t/ShippedGateway.pm) starts and serves from it, a write that
# fails fails at the writer, never at the gateway, and the route guard's
# watch outlives the remounts.
#
# The routes root is a 64 KiB tmpfs mounted over t/servroot-fs/routes;
# the file needs root and mount(8) and is skipped without them.  It is
# unmounted at the end in any case.

use strict;
use warnings;

use Cwd qw(realpath);
use Errno qw(ENOSPC EROFS);
use File::Basename qw(dirname);
use Test::More;

use lib dirname(realpath(__FILE__));
use ShippedGateway;

my $top    = realpath(dirname(realpath(__FILE__)) . '/..');
my $base   = servroot('fs');
my $routes = "$base/routes";
my $port   = $ENV{TEST_NGINX_FS_PORT} || 1992;

plan skip_all => 'mounts a tmpfs: needs root' if $>;

# left mounted by an interrupted run
umount() if mounted();

my $gw = ShippedGateway->new(base => $base, port => $port);

END {
    my $status = $?;
    $gw->stop if $gw;
    umount() if mounted();
    $? = $status;
}

if (system('mount', '-t', 'tmpfs', '-o', 'size=64k,mode=0755', 'tmpfs',
           $routes) != 0 || !mounted())
{
    plan skip_all => 'cannot mount a tmpfs here (mount -t tmpfs failed)';
}

mkdir "$routes/v1", 0755;
write_file("$routes/hello.lua", "ngx.say(\"v1\")\n");
write_file("$routes/v1/time.lua", "ngx.say(\"time\")\n");


# --- read-only: starts and serves ---

remount('ro');
ok(!open(my $fh, '>', "$routes/new.lua") && $! == EROFS,
   'the routes root is read-only (EROFS)');

ok(eval { $gw->start; 1 }, 'the gateway starts on a read-only routes root')
    or die "no gateway: $@";
serves('/lua/hello', '200 v1', 'read-only: a route');
serves('/lua/v1/time', '200 time', 'read-only: a nested route');
serves('/lua/missing', 404, 'read-only: a missing route');
serves('/lua/a//b', 400, 'read-only: an invalid name');


# --- rw again: the watch survived, an edit is seen ---

remount('rw');
replace_file("$routes/hello.lua", "ngx.say(\"v2\")\n");
serves('/lua/hello', '200 v2', 'rw again: an edit is served at once');


# --- full ---

my $filled = fill("$routes/filler");
is($filled, ENOSPC + 0, 'the routes root is full (ENOSPC)')
    or diag("filling stopped with: $filled");

serves('/lua/hello', '200 v2', 'full: a route');
serves('/lua/missing', 404, 'full: a missing route');

# a deploy tool's replace fails when writing its temporary file: nothing
# reaches the route
ok(!eval { replace_file("$routes/hello.lua", "ngx.say(\"v3\")\n"); 1 },
   'full: a replace fails at the writer') or diag('it succeeded');
unlink "$routes/hello.lua.tmp";
serves('/lua/hello', '200 v2', 'full: the route still serves its version');

# an in-place rewrite cut short: the truncation frees the file's page,
# the write of three pages stops after one, which leaves an unfinished
# string; the last good version serves on, on every worker
my $err = rewrite("$routes/hello.lua",
                  'ngx.say("v3 ' . ('x' x 10000) . "\")\n");
is($err, ENOSPC + 0, 'full: an in-place rewrite is cut short (ENOSPC)');
ok(-s "$routes/hello.lua" < 10000, 'and leaves a partial file');
my (%failed, @wrong);
for (1 .. 100) {
    my ($status, $body) = $gw->get('/lua/hello');
    push @wrong, "$status $body" if "$status $body" ne '200 v2';
    # each worker says once that the new version does not compile
    %failed = map { $_ => 1 } $gw->read_log
              =~ /\[error\] (\d+)#\d+: .*route "hello" version \d+ does not/g;
    last if $_ >= 10 && keys %failed >= 2;
}
is_deeply(\@wrong, [], 'full: a partial file: the last good version serves');
is(scalar keys %failed, scalar $gw->workers,
   'on every worker (each tried the partial file)');
ok(exists $gw->status->{failed_routes}{hello},
   '/status lists the partial route under failed_routes');


# --- space again ---

unlink "$routes/filler" or die "unlink: $!";
rewrite("$routes/hello.lua", "ngx.say(\"v4\")\n");
serves('/lua/hello', '200 v4', 'space again: an edit is served at once');
ok(!exists $gw->status->{failed_routes}{hello},
   '/status lists no failed route');


# the partial file's compile errors, and nothing worse
my @bad = grep { !/\[error\] .*hello\.lua.*unfinished string/ }
          $gw->read_log =~ /^(.*\[(?:error|crit|alert|emerg)\].*)$/mg;
is_deeply(\@bad, [], 'error.log: nothing but the partial file\'s errors');

$gw->stop;
ok(!$gw->master, 'the gateway stopped');

# at the end: processes report as they exit
$gw->reports_ok if TestChecked::checked();

done_testing();


# the GET answers "status body", or just that status
sub serves {
    my ($path, $want, $name) = @_;
    my ($status, $body) = $gw->get($path);
    is($want =~ / / ? "$status $body" : $status, $want, "$name: GET $path");
}

# writes until the file system refuses; the errno it stopped with
sub fill {
    my ($path) = @_;
    open my $fh, '>:raw', $path or return $! + 0;
    my $page = "\0" x 4096;
    while (1) {
        syswrite($fh, $page) // return $! + 0;
    }
}

# open with truncation, write, close; the errno of the first failure, or 0
sub rewrite {
    my ($path, $data) = @_;
    open my $fh, '>:raw', $path or return $! + 0;
    while (length $data) {
        my $n = syswrite($fh, $data) // return $! + 0;
        substr($data, 0, $n) = '';
    }
    close $fh or return $! + 0;
    return 0;
}

sub remount {
    system('mount', '-o', "remount,$_[0]", $routes) == 0
        or die "mount -o remount,$_[0] $routes failed\n";
}

sub mounted {
    return scalar grep { (split ' ')[1] eq $routes }
                  split /\n/, slurp('/proc/mounts');
}

sub umount {
    system('umount', $routes) == 0 or warn "umount $routes failed\n";
}
