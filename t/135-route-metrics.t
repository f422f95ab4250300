# The route metrics (gateway/metrics/): requests counted in C in the log
# phase of the locations with "route_metrics <tree>", read through
# gateway.metrics at GET /metrics.  The latency histogram resolves
# microseconds (buckets from 50 us); counts are exact across two workers
# and for the guard's refusals; a deleted route's record goes and comes
# back from zero; a full zone is logged once and costs no request;
# configurations counting through gateway.metrics.log() still count;
# two trees over one root count apart, and without versions (the cache
# off) by name; trees and zone sizes out of bounds are refused.  t/130
# checks the shipped gateway's counts across a reload and a worker
# killed with -9.

use FindBin;
use lib $FindBin::Bin;
use TestGateway;
use TestRuntime qw(http_config);
use TestGateway::Util qw(slurp wait_until);

my $http_config = http_config() . <<'_EOC_';
    route_metrics_zone 1m;
_EOC_

my $config = <<'_EOC_';
    location ~ ^/lua/(.*)$ {
        route_guard $1;
        route_guard_root html/routes;
        route_metrics routes;
        add_header X-Worker $pid always;
        content_by_lua_block { require("gateway.router").serve() }
    }

    location = /metrics {
        content_by_lua_block { require("gateway.metrics.prometheus").serve() }
    }
_EOC_

# lib/: the runtime's modules tree (route_guard_modules)
my $files = <<'_EOF_';
>>> lib/.keep
>>> routes/hello.lua
ngx.say("hello")
>>> routes/fast.lua
ngx.say("fast")
>>> routes/both.lua
ngx.say("both")
>>> routes/legacy.lua
ngx.say("legacy")
>>> routes/quiet.lua
ngx.say("quiet")
>>> routes/own404.lua
ngx.status = 404
ngx.say("none")
>>> routes/slow.lua
ngx.sleep(0.3)
ngx.say("slow")
_EOF_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(http_config => $http_config)
        unless exists $block->{http_config};
    $block->set_value(config => $config) unless exists $block->{config};
    $block->set_value(user_files => $files) unless exists $block->{user_files};
});


# --- helpers for the setup code (package main) ---

# GET $path on a new connection, dies unless it answers $status
sub get_ok {
    my ($path, $status) = @_;
    my $res = http_request("GET $path");
    die "GET $path: $res->{error}\n" if $res->{error};
    die "GET $path: $res->{status}, want $status\n"
        if $res->{status} != ($status // 200);
    return $res;
}

# GET /metrics as { 'name{labels}' => value }
sub scrape {
    my %m = get_ok('/metrics')->{body} =~ /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/mg;
    return \%m;
}

# scrape() until the series given reach their values, for at most 3 s: a
# request is counted in its log phase, which nginx runs after the last byte
# of the response went out, so the other worker may be scraped first
sub scrape_until {
    my %want = @_;
    my $m;
    wait_until(3, sub {
        $m = scrape();
        return !grep { ($m->{$_} // 0) < $want{$_} } keys %want;
    });
    return $m;
}

run_tests();

__DATA__

=== TEST 1: the histogram resolves microseconds: 18 buckets from 50 us to 10 s
--- setup
get_ok('/lua/hello') for 1 .. 20;
--- request
GET /metrics
--- response_body_like eval
CORE::join '', map { qq{gateway_request_duration_seconds_bucket\\{tree="routes",route="hello",le="\Q$_\E"\\} \\d+\n} }
    qw(0.00005 0.0001 0.00025 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1
       0.25 0.5 1 2.5 5 10 +Inf)
--- no_error_log
[warn]


=== TEST 2: a fast route under a millisecond, its sum in microseconds
--- setup
get_ok('/lua/fast') for 1 .. 50;
my $m = scrape();
my $h = 'tree="routes",route="fast"';
my $fast = $m->{qq{gateway_request_duration_seconds_bucket{$h,le="0.0005"}}};
die "no request of fast under 0.5 ms: $fast\n" unless $fast >= 1;
my $sum = $m->{"gateway_request_duration_seconds_sum{$h}"};
die "sum $sum: not in microseconds\n"
    unless $sum > 0 && $sum < 50 * 10 && $sum != int($sum * 1000) / 1000;
die "count\n" unless $m->{"gateway_request_duration_seconds_count{$h}"} == 50;
--- request
GET /metrics
--- response_body_like
gateway_requests_total\{tree="routes",route="fast",class="2xx"\} 50\n


=== TEST 3: a route sleeping 0.3 s is above the 0.25 s bucket, and its sum too
--- setup
get_ok('/lua/slow');
--- request
GET /metrics
--- response_body_like
le="0\.25"\} 0\n.*le="\+Inf"\} 1\ngateway_request_duration_seconds_sum\{tree="routes",route="slow"\} (0\.[3-9]|[1-9])[0-9.]*\ngateway_request_duration_seconds_count\{tree="routes",route="slow"\} 1\n


=== TEST 4: exact counts by class over two workers
--- workers: 2
--- setup
my %seen;
my $n = 0;
spread(\%seen, 200, 600, sub {
    $n++;
    get_ok('/lua/own404', 404) if $n % 4 == 0;
    return get_ok('/lua/both')->{headers}{'x-worker'};
});
both_workers('both', \%seen);
my $m = scrape_until(
    'gateway_requests_total{tree="routes",route="both",class="2xx"}' => $n,
    'gateway_requests_total{tree="routes",route="own404",class="4xx"}'
        => int($n / 4),
    'gateway_request_duration_seconds_count{tree="routes",route="both"}'
        => $n);
my $got = $m->{'gateway_requests_total{tree="routes",route="both",class="2xx"}'};
die "both: $got counted, $n sent\n" unless $got == $n;
$got = $m->{'gateway_requests_total{tree="routes",route="own404",class="4xx"}'};
die "own404: $got counted, " . int($n / 4) . " sent\n" unless $got == int($n / 4);
$got = $m->{'gateway_request_duration_seconds_count{tree="routes",route="both"}'};
die "both: _count $got, $n sent\n" unless $got == $n;
--- request
GET /metrics
--- response_body_unlike
class="[135]xx"


=== TEST 5: the guard's refusals counted in the log phase, no name a label
--- setup
get_ok('/lua/nothere', 404);
get_ok('/lua/nothere2', 404);
get_ok('/lua/-x', 400);
--- request
GET /metrics
--- response_body_like
gateway_rejections_total\{tree="routes",reason="grammar"\} 1\ngateway_rejections_total\{tree="routes",reason="missing"\} 2\n
--- response_body_unlike
nothere|-x


=== TEST 6: a deleted route's series go; it comes back from zero
--- setup
get_ok('/lua/gone') for 1 .. 3;
my $key = 'gateway_requests_total{tree="routes",route="gone",class="2xx"}';
my $m = scrape();
die "gone: $m->{$key}\n" unless $m->{$key} == 3;
unlink 'routes/gone.lua' or die "unlink: $!\n";
$m = scrape();
die "gone still listed\n" if grep { /"gone"/ } keys %$m;
write_file('routes/gone.lua', 'ngx.say("back")');
get_ok('/lua/gone');
--- user_files
>>> lib/.keep
>>> routes/gone.lua
ngx.say("gone")
--- request
GET /metrics
--- response_body_like
gateway_requests_total\{tree="routes",route="gone",class="2xx"\} 1\n


=== TEST 7: a full zone: logged once, every request answered, the known routes counted
--- log_level: warn
--- http_config eval
TestRuntime::http_config() . "    route_metrics_zone 32k;\n"
--- init
write_file('lib/.keep', '');
write_file("routes/r$_.lua", "ngx.say($_)") for 1 .. 150;
--- setup
for my $i (1 .. 150) {
    my $body = get_ok("/lua/r$i")->{body};
    die "r$i: $body\n" unless $body eq "$i\n";
}
get_ok('/lua/r1') for 1 .. 4;
my $m = scrape();
my $got = $m->{'gateway_requests_total{tree="routes",route="r1",class="2xx"}'};
die "r1: $got counted, 5 sent\n" unless $got == 5;
my $series = grep { /^gateway_requests_total/ } keys %$m;
die "$series routes counted in 32k\n" unless $series > 0 && $series < 150;
my $logged = () = slurp("$html_dir/../logs/error.log") =~ /the zone is full/g;
die "the full zone logged $logged times\n" unless $logged == 1;
--- user_files
--- request
GET /lua/r150
--- response_body
150
--- no_error_log
[error]


=== TEST 8: gateway.metrics.log() from log_by_lua still counts; a bad tree is refused
--- config
    location ~ ^/old/(.*)$ {
        route_guard $1;
        route_guard_root html/routes;
        content_by_lua_block { require("gateway.router").serve() }
        log_by_lua_block { require("gateway.metrics").log("routes") }
    }

    location = /bad {
        content_by_lua_block {
            local metrics = require "gateway.metrics"
            for _, tree in ipairs{ "Bad", "", ("x"):rep(65), "a b" } do
                local ok, err = pcall(metrics.log, tree)
                ngx.say(ok, " ", err)
            end
        }
    }

    location = /metrics {
        content_by_lua_block { require("gateway.metrics.prometheus").serve() }
    }
--- setup
get_ok('/old/legacy') for 1 .. 3;
--- request eval
["GET /bad", "GET /metrics"]
--- response_body_like eval
[qr/\A(false [^\n]*bad argument #1 to 'log' \(a tree is 1 to 64 of \[a-z0-9_\][^\n]*\n){4}\z/,
 qr/gateway_requests_total\{tree="routes",route="legacy",class="2xx"\} 3\n/]


=== TEST 9: a tree outside [a-z0-9_] is refused at configuration time
--- config
    location /x/ {
        route_metrics Routes;
        return 204;
    }
--- must_die
--- error_log
invalid tree "Routes": 1 to 64 lowercase letters, digits or "_"


=== TEST 10: a zone smaller than 8 pages is refused
--- http_config eval
TestRuntime::http_config() . "    route_metrics_zone 4k;\n"
--- must_die
--- error_log
invalid zone size "4k"


=== TEST 11: route_metrics off in a location below one that counts
--- config
    route_metrics routes;

    location ~ ^/lua/(.*)$ {
        route_guard $1;
        route_guard_root html/routes;
        content_by_lua_block { require("gateway.router").serve() }
    }

    location ~ ^/quiet/(.*)$ {
        route_guard $1;
        route_guard_root html/routes;
        route_metrics off;
        content_by_lua_block { require("gateway.router").serve() }
    }

    location = /metrics {
        content_by_lua_block { require("gateway.metrics.prometheus").serve() }
    }
--- setup
get_ok('/lua/quiet') for 1 .. 2;
get_ok('/quiet/quiet') for 1 .. 5;
--- request
GET /metrics
--- response_body_like
gateway_requests_total\{tree="routes",route="quiet",class="2xx"\} 2\n


=== TEST 12: two trees over one root: the same script version, counted apart
--- config
    location ~ ^/one/(.*)$ {
        route_guard $1;
        route_guard_root html/routes;
        route_metrics one;
        content_by_lua_block { require("gateway.router").serve() }
    }

    location ~ ^/two/(.*)$ {
        route_guard $1;
        route_guard_root html/routes;
        route_metrics two;
        content_by_lua_block { require("gateway.router").serve() }
    }

    location = /metrics {
        content_by_lua_block { require("gateway.metrics.prometheus").serve() }
    }
--- setup
for (1 .. 3) { get_ok('/one/hello'); get_ok('/two/hello'); get_ok('/one/hello') }
--- request
GET /metrics
--- response_body_like
gateway_requests_total\{tree="one",route="hello",class="2xx"\} 6\ngateway_requests_total\{tree="two",route="hello",class="2xx"\} 3\n


=== TEST 13: with route_guard_cache off (no versions), counted by name
--- config
    location ~ ^/lua/(.*)$ {
        route_guard $1;
        route_guard_root html/routes;
        route_guard_cache off;
        route_metrics routes;
        content_by_lua_block { require("gateway.router").serve() }
    }

    location = /metrics {
        content_by_lua_block { require("gateway.metrics.prometheus").serve() }
    }
--- setup
get_ok('/lua/hello') for 1 .. 7;
--- request
GET /metrics
--- response_body_like
gateway_requests_total\{tree="routes",route="hello",class="2xx"\} 7\n
