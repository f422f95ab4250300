# The gateway as shipped: conf/nginx.conf rendered by gateway/bin/render-conf
# and run by gateway/bin/gatewayctl, the way `make start` does it, against
# a routes root of its own.  In a checked run (t/TestChecked.pm) the
# configuration is a copy of conf/ with the sanitizers' env directives.

use strict;
use warnings;

use FindBin;
use lib $FindBin::Bin;

use Cwd qw(realpath);
use File::Basename qw(basename dirname);
use File::Path qw(make_path remove_tree);
use IO::Socket::INET;
use Test::More;

use TestChecked;

my $top    = realpath(dirname(realpath(__FILE__)) . '/..');
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || "$top/t/servroot") . '-gateway';
my $routes = "$prefix/routes";
my $port   = $ENV{TEST_NGINX_GATEWAY_PORT} || 1986;
my $binary = $ENV{TEST_NGINX_BINARY} || "$top/build/nginx/sbin/nginx";

remove_tree($prefix);
my $lib    = "$prefix/lib";
my $status_port = $port + 1;

make_path("$routes/v1", $lib, "$prefix/logs");
chmod 0755, $prefix, $routes, "$routes/v1", $lib;

my $nginx  = nginx_wrapper($prefix, "$prefix/logs", $binary);
my $reports_before = report_files("$prefix/logs");
my @outputs;        # of gatewayctl, for sanitizer reports

my $conf   = "$top/conf";
if (env_directives() ne '') {
    $conf = "$prefix/conf-src";
    make_path($conf);
    for my $f (glob "$top/conf/*.conf") {
        my $text = read_file($f);
        $text = TestChecked::with_env_directives($text)
            if $f =~ m{/nginx\.conf$};
        open my $fh, '>', "$conf/" . basename($f) or die "$f: $!";
        print $fh $text;
        close $fh;
    }
}

write_file("$routes/hello.lua", 'ngx.say("hello from the shipped conf")');
write_file("$routes/v1/time.lua", 'ngx.say("v1/time")');

write_file("$lib/shout.lua", 'return { it = function(s) return s:upper() end }');
write_file("$routes/loud.lua",
           'ngx.say(require("shout").it("hello"))');

my %env = (NGINX_BIN => $nginx, PREFIX => $prefix, PORT => $port,
           STATUS_PORT => $status_port, ROUTES => $routes, LIB => $lib,
           CONF => $conf);

sub gatewayctl {
    my ($cmd) = @_;
    local @ENV{keys %env} = values %env;
    my $out = `cd $top && gateway/bin/gatewayctl $cmd 2>&1`;
    push @outputs, $out;
    return ($? >> 8, $out);
}

my ($rc, $out) = gatewayctl('start');
is($rc, 0, 'gatewayctl start') or diag($out);
like($out, qr/started \(pid \d+\)/, 'start says it started');

# the same port again: a clear message, not nginx's long line alone
{
    ($rc, $out) = gatewayctl('start');
    isnt($rc, 0, 'a second start fails');
    like($out, qr/already running/, 'a second start says why');

    my $busy = IO::Socket::INET->new(LocalAddr => '127.0.0.1', Listen => 1,
                                     ReuseAddr => 1)
        or die "listen: $!";
    local $env{PORT} = $busy->sockport;
    local $env{STATUS_PORT} = $port + 2;
    local $env{PREFIX} = "$prefix-busy";
    ($rc, $out) = gatewayctl('start');
    isnt($rc, 0, 'start on a busy port fails');
    like($out, qr/port \d+ or \d+ on 127\.0\.0\.1 is busy/,
         'and says the port is busy');
    remove_tree("$prefix-busy");
}

my @cases = (
    # request line                         status  body
    [ 'GET /lua/hello',                     200, qr/^hello from the shipped conf$/ ],
    [ 'GET /lua/v1/time',                   200, qr/^v1\/time$/ ],
    [ 'GET /lua?route=v1/time',             200, qr/^v1\/time$/ ],
    [ 'GET /lua?route=v1%2ftime',           400, undef ],   # args are not decoded
    [ 'GET /lua/missing',                   404, undef ],
    [ 'GET /lua/',                          400, undef ],
    [ 'GET /lua/hello.lua',                 400, undef ],
    [ 'GET /lua/v1//time',                  400, undef ],   # raw, not merged
    [ 'GET /lua/v1/./time',                 400, undef ],   # raw, not resolved
    [ 'GET /lua/hell%6f',                   400, undef ],   # raw, not decoded
    [ 'GET /lua/%2e%2e/%2e%2e/etc/passwd',  400, undef ],
    [ 'GET /lua/..%2f..%2fetc%2fpasswd',    400, undef ],
    [ 'GET /lua/hello%00',                  400, undef ],
    [ 'GET /lua/hello?x=1',                 200, qr/^hello/ ],
    [ 'GET /',                              404, undef ],
    [ 'GET /routes/hello.lua',              404, undef ],
);

my ($got, $resp);

for my $c (@cases) {
    my ($line, $status, $body) = @$c;
    ($got, $resp) = request("$line HTTP/1.0\r\nHost: localhost\r\n\r\n");
    is($got, $status, "$line -> $status");
    like($resp, $body, "$line body") if $body;
    unlike($resp, qr/servroot|\.lua|$routes/, "$line: no internals")
        unless $status == 200;
}

# a module from LIB, and its new version after an edit
($got, $resp) = request("GET /lua/loud HTTP/1.0\r\n\r\n");
is($got, 200, 'a route requiring a module from LIB');
is($resp, 'HELLO', 'runs the module');
write_file("$lib/shout.lua.tmp",
           'return { it = function(s) return s:upper() .. "!" end }');
rename "$lib/shout.lua.tmp", "$lib/shout.lua" or die "rename: $!";
($got, $resp) = request("GET /lua/loud HTTP/1.0\r\n\r\n");
is($resp, 'HELLO!', 'the next request runs the edited module');

# the status listener answers on loopback, the public one has no /status
($got, $resp) = request("GET /status HTTP/1.0\r\n\r\n", $status_port);
is($got, 200, 'GET /status on the status port');
like($resp, qr/"failed_routes"/, 'status is the runtime report');
($got) = request("GET /status HTTP/1.0\r\n\r\n");
is($got, 404, 'no /status on the public port');

# a script dropped in after the start is served at once
write_file("$routes/late.lua", 'ngx.say("late")');
($got, $resp) = request("GET /lua/late HTTP/1.0\r\n\r\n");
is($got, 200, 'a script created after start is served without reload');
like($resp, qr/^late$/, 'with its output');

# the error log got nothing at "error" level from all those bad names
my $log = read_file("$prefix/logs/error.log");
unlike($log, qr/\[(error|crit|alert|emerg)\]/, 'no error lines in the log');

($rc, $out) = gatewayctl('stop');
is($rc, 0, 'gatewayctl stop') or diag($out);
ok(!-e "$prefix/logs/nginx.pid" || !kill(0, pid()), 'nginx is gone');

no_reports_ok('no valgrind or sanitizer report', $reports_before,
              ["$prefix/logs"], read_file("$prefix/logs/error.log"),
              @outputs)
    if checked();

done_testing();


sub request {
    my ($raw, $to) = @_;

    $to //= $port;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$to",
                                  Timeout => slow(5))
        or return (0, "connect: $!");
    print $s $raw;
    local $/;
    my $r = <$s> // '';
    my ($status) = $r =~ m{^HTTP/1\.\d (\d{3})};
    my ($body) = $r =~ m{\r\n\r\n(.*)}s;
    $body //= '';
    $body =~ s/\n\z//;
    return ($status // 0, $body);
}

sub pid {
    return 0 + read_file("$prefix/logs/nginx.pid");
}

sub write_file {
    my ($path, $data) = @_;
    open my $fh, '>', $path or die "$path: $!";
    print $fh $data, "\n";
    close $fh;
    chmod 0644, $path;
}

sub read_file {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    return scalar <$fh>;
}
