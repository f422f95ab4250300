# The gateway as shipped: conf/nginx.conf rendered by gateway/bin/render-conf
# and run by gateway/bin/gatewayctl, the way `make start` does it, against
# a routes root of its own.

use strict;
use warnings;

use Cwd qw(realpath);
use File::Basename qw(dirname);
use File::Path qw(remove_tree);
use IO::Socket::INET;
use Test::More;

use lib dirname(realpath(__FILE__));
use ShippedGateway;

my $top  = realpath(dirname(realpath(__FILE__)) . '/..');
my $port = $ENV{TEST_NGINX_GATEWAY_PORT} || 1986;

my $gw = ShippedGateway->new(base => servroot('gateway'),
                             port => $port);
my ($routes, $modules) = @$gw{qw(routes modules)};

mkdir "$routes/v1", 0755;
write_file("$routes/hello.lua", "ngx.say(\"hello from the shipped conf\")\n");
write_file("$routes/v1/time.lua", "ngx.say(\"v1/time\")\n");

write_file("$modules/shout.lua",
           "return { it = function(s) return s:upper() end }\n");
write_file("$routes/loud.lua", "ngx.say(require(\"shout\").it(\"hello\"))\n");

my ($rc, $out) = $gw->gatewayctl('start');
is($rc, 0, 'gatewayctl start') or diag($out);
like($out, qr/started \(pid \d+\)/, 'start says it started');

# the same port again: a clear message, not nginx's long line alone
{
    ($rc, $out) = $gw->gatewayctl('start');
    isnt($rc, 0, 'a second start fails');
    like($out, qr/already running/, 'a second start says why');

    my $busy = IO::Socket::INET->new(LocalAddr => '127.0.0.1', Listen => 1,
                                     ReuseAddr => 1)
        or die "listen: $!";
    my $other = ShippedGateway->new(base => servroot('gateway-busy'),
                                    port => $busy->sockport);
    ($rc, $out) = $other->gatewayctl('start');
    isnt($rc, 0, 'start on a busy port fails');
    like($out, qr/port \d+ or \d+ on 127\.0\.0\.1 is busy/,
         'and says the port is busy');
    $other->stop;
    remove_tree($other->{base});
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
    ($got, $resp) = $gw->get($line =~ s/^GET //r);
    is($got, $status, "$line -> $status");
    like($resp, $body, "$line body") if $body;
    unlike($resp, qr/servroot|\.lua|$routes/, "$line: no internals")
        unless $status == 200;
}

# a module from MODULES, and its new version after an edit
($got, $resp) = $gw->get('/lua/loud');
is($got, 200, 'a route requiring a module from MODULES');
is($resp, 'HELLO', 'runs the module');
replace_file("$modules/shout.lua",
             "return { it = function(s) return s:upper() .. \"!\" end }\n");
($got, $resp) = $gw->get('/lua/loud');
is($resp, 'HELLO!', 'the next request runs the edited module');

# the status listener answers on loopback, the public one has no /status
($got, $resp) = $gw->get('/status', $gw->{status_port});
is($got, 200, 'GET /status on the status port');
like($resp, qr/"failed_routes"/, 'status is the runtime report');
($got) = $gw->get('/status');
is($got, 404, 'no /status on the public port');

# a script dropped in after the start is served at once
write_file("$routes/late.lua", "ngx.say(\"late\")\n");
($got, $resp) = $gw->get('/lua/late');
is($got, 200, 'a script created after start is served without reload');
like($resp, qr/^late$/, 'with its output');

# the error log got nothing at "error" level from all those bad names
my $log = $gw->read_log;
unlike($log, qr/\[(error|crit|alert|emerg)\]/, 'no error lines in the log');

($rc, $out) = $gw->gatewayctl('stop');
is($rc, 0, 'gatewayctl stop') or diag($out);
ok(!$gw->master, 'nginx is gone');

# at the end: processes report as they exit
$gw->reports_ok if TestChecked::checked();

done_testing();
