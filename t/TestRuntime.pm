package TestRuntime;

# Helpers for the setup code of the Lua runtime's test files (070 hot
# reload, 080 modules), on top of t/TestGateway.pm: their locations add
# X-Worker ($pid) and, for routes, X-Route-Version to every response.
#
#   use TestGateway;
#   use TestRuntime;

use strict;
use warnings;

use JSON::PP ();
use TestGateway ();

use base 'Exporter';
our @EXPORT = qw(get show expect warm_both log_pos log_since count_lines
                 status_report);


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
