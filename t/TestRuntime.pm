package TestRuntime;

# Helpers for the setup code of the Lua runtime's test files (070 hot
# reload, 080 modules), on top of t/TestGateway.pm: their locations add
# X-Worker ($pid) and, for routes, X-Route-Version to every response.
#
#   use TestGateway;
#   use TestRuntime;
#
#   runtime_blocks($files);     # the blocks' default configuration
#
# http_config() is the runtime's http-level configuration for a test's
# nginx.conf (gateway.router with modules from html/lib), which
# t/TestSandbox.pm uses too.

use strict;
use warnings;

use JSON::PP ();
use TestGateway ();

use base 'Exporter';
our @EXPORT = qw(runtime_blocks get show expect warm_both log_pos log_since
                 count_lines status_report);
our @EXPORT_OK = qw(http_config);


my $HttpConfig = <<'_EOC_';
    route_guard_modules $TEST_NGINX_HTML_DIR/lib;
    lua_shared_dict gateway_status 1m;
    lua_shared_dict gateway_metrics 8m;
    lua_shared_dict gateway_scripts 8m;
    init_by_lua_block {
        require("gateway.router").init{ modules = "$TEST_NGINX_HTML_DIR/lib" }
    }
    init_worker_by_lua_block { require("gateway.router").init_worker() }
_EOC_

sub http_config () { $HttpConfig }

my $Config = <<'_EOC_';
    location ~ ^/lua/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        add_header X-Route-Version $route_version always;
        add_header X-Worker $pid always;
        content_by_lua_block { require("gateway.router").serve() }
    }

    location = /status {
        content_by_lua_block { require("gateway.status").serve() }
    }
_EOC_


# Routes through gateway.router with modules from html/lib, and GET
# /status: each block's http_config, config and user_files unless it has
# its own ($files: the default user_files).
sub runtime_blocks {
    my ($files) = @_;
    TestGateway::add_block_preprocessor(sub {
        my $block = shift;
        $block->set_value(http_config => $HttpConfig)
            unless exists $block->{http_config};
        $block->set_value(config => $Config) unless exists $block->{config};
        $block->set_value(user_files => $files)
            unless exists $block->{user_files};
    });
}


# one request on a new connection: status, body, version, worker
sub get {
    my $path = shift;
    my $res = TestGateway::http_request("GET $path");
    die "GET $path: $res->{error}\n" if $res->{error};
    return {
        status  => $res->{status},
        body    => $res->{body},
        version => $res->{headers}{'x-route-version'} // '',
        worker  => $res->{headers}{'x-worker'} // '?',
    };
}

sub show {
    my $r = shift;
    my $body = TestGateway::printable($r->{body});
    $body = substr($body, 0, 60) . '...' if length $body > 60;
    return "status $r->{status} body '$body' version '$r->{version}'"
           . " worker $r->{worker}";
}

# pushes onto @$errs unless $r has $status (and $body, when given)
sub expect {
    my ($errs, $ctx, $r, $status, $body) = @_;
    push @$errs, "$ctx: want $status '" . TestGateway::printable($body)
                 . "', got " . show($r)
        unless $r->{status} == $status
               && (!defined $body || $r->{body} eq $body);
}

# requests until both workers have answered (each one has run the route
# and loaded its modules)
sub warm_both {
    my ($path, $status, $body) = @_;
    my (%seen, @errs);
    TestGateway::spread(\%seen, 2, 1000, sub {
        my $r = get($path);
        expect(\@errs, "warm-up $path", $r, $status, $body);
        return $r->{worker};
    });
    TestGateway::verdict("warm-up $path", \@errs);
    TestGateway::both_workers("warm-up $path", \%seen);
    return \%seen;
}

sub log_pos { TestGateway::log_size() }
sub log_since { TestGateway::read_log(shift) }

# how many lines of the log since $from match $re
sub count_lines {
    my ($from, $re) = @_;
    return scalar grep { $_ =~ $re } split /\n/, log_since($from);
}

sub status_report {
    my $r = get('/status');
    die "GET /status: " . show($r) . "\n" unless $r->{status} == 200;
    my $report = eval { JSON::PP::decode_json($r->{body}) }
        or die "GET /status: not JSON: $r->{body}\n";
    return $report;
}

1;
