package TestSandbox;

# Shared setup of the t/110-sandbox-*.t files: location /sandbox/ as
# shipped (route guard with its own root, gateway.sandbox), a normal
# script sandbox/hello.lua and location = /pid (the worker's pid).
#
# A block with "--- attack: <budget>" (instruction, time, memory,
# nesting, ...) is an attack: its script is html/sandbox/a.lua (from
# --- user_files), and its --- setup (unless it has its own) asks, on new
# connections, /pid, /sandbox/a, /pid: the attack must answer
# `error_code` (503 unless given) with the JSON error "budget_exceeded"
# naming <budget>, and the worker's pid must not change.  The block's own
# request is then GET /sandbox/hello: a normal request right after works.
# "--- attack: error" expects 500 "script_error" the same way.  Options
# per location go in --- config (the preprocessor keeps it).
#
# The time budget is 1 s, as shipped, times TEST_NGINX_SLOWDOWN
# (t/TestChecked.pm): under valgrind the instruction budget takes longer.
#
# A file may set $TestSandbox::config before run_tests() to have its own
# default --- config; location() writes a sandbox location with budgets
# of its own, error_body() is the answer to a budget that ran out.

use strict;
use warnings;

use TestGateway ();
use TestRuntime ();

our @EXPORT = qw(attack);
use base 'Exporter';

our $config = <<'_EOC_';
    location ~ ^/sandbox/(.+)$ {
        route_guard $1;
        route_guard_root html/sandbox;
        content_by_lua_block {
            require("gateway.sandbox").serve{ time = $TEST_NGINX_SLOWDOWN }
        }
    }

    location = /pid {
        return 200 "$pid";
    }
_EOC_

my $hello = <<'_EOF_';
>>> lib/.keep
>>> sandbox/hello.lua
ngx.say("hello ", ("x"):rep(3), " ", #string.format("%5d", 1))
_EOF_

TestGateway::add_sections('attack');

TestGateway::add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(http_config => TestRuntime::http_config())
        unless exists $block->{http_config};
    $block->set_value(config => $config) unless exists $block->{config};
    $block->set_value(user_files => (TestGateway::section($block, 'user_files') // '') . $hello);

    my $kind = TestGateway::section($block, 'attack');
    return unless defined $kind;
    $kind =~ s/^\s+|\s+\z//g;
    die $block->name . ": --- attack: a budget's name or \"error\"\n"
        unless $kind =~ /^\w+\z/;

    my $status = TestGateway::section($block, 'error_code')
                 // ($kind eq 'error' ? 500 : 503);
    $block->set_value(setup => "attack('/sandbox/a', $status, '$kind')")
        unless exists $block->{setup};
    $block->set_value(request => 'GET /sandbox/hello');
    $block->set_value(error_code => 200);
    $block->set_value(response_body => "hello xxx 5\n")
        unless exists $block->{response_body};
});


sub get_ok {
    my $path = shift;
    my $r = TestGateway::http_request("GET $path", 30);
    die "GET $path: $r->{error}\n" if $r->{error};
    return $r;
}

# the body of the answer to a script that ran out of budget $kind, or
# that failed ($kind "error")
sub error_body {
    my $kind = shift;
    return $kind eq 'error'
        ? qq({"error":"script_error","message":"the script failed"}\n)
        : qq({"error":"budget_exceeded",)
          . qq("message":"the script exceeded a budget","budget":"$kind"}\n);
}

# location ~ ^/$prefix/(.+)$ running html/sandbox/$1 with serve{ $opts }
# (Lua table fields; $TEST_NGINX_* are substituted when the configuration
# is written); every answer, errors too, names its worker in X-Pid
sub location {
    my ($prefix, $opts) = @_;
    return <<"_EOC_";
    location ~ ^/$prefix/(.+)\$ {
        route_guard \$1;
        route_guard_root html/sandbox;
        add_header X-Pid \$pid always;
        content_by_lua_block {
            require("gateway.sandbox").serve{ $opts }
        }
    }
_EOC_
}

# the attack on a new connection between two /pid requests
sub attack {
    my ($path, $status, $kind) = @_;
    my $want = error_body($kind);
    my $pid = get_ok('/pid')->{body};
    my $r = get_ok($path);
    my $after = get_ok('/pid')->{body};
    my @errs;
    push @errs, "$path: want $status, got $r->{status}"
        unless $r->{status} == $status;
    push @errs, "$path: want body '$want', got '"
                . TestGateway::printable(substr($r->{body}, 0, 200)) . "'"
        unless $r->{body} eq $want;
    push @errs, "the worker changed: $pid, then $after"
        unless $pid eq $after;
    TestGateway::verdict("attack $path", \@errs);
}

1;
