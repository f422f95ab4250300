package TestGateway::Socket;

# HTTP/1.x over loopback: a request as bytes on a connection of its own,
# the response read until it is complete (Content-Length, chunked, or
# EOF) and parsed.  Used by the block runner (t/TestGateway.pm), by
# t/ShippedGateway.pm and by test files that speak to nginx themselves.
#
#   use TestGateway::Socket qw(build_request send_request);
#
#   my $res = send_request(build_request("GET /t", ''), 5, $port);
#   # { status, headers => { lc name => value }, body, raw, complete }
#   # or { error, raw } when nothing complete came back in time

use strict;
use warnings;

use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time);

use TestGateway::Util qw(slow);

use base 'Exporter';
our @EXPORT_OK = qw(build_request http_request send_request parse_response
                    decode_chunked port_open);


# "GET /x" plus an optional body on the following lines, and the lines
# of $more as headers; HTTP/1.1, Host: localhost, Connection: close
sub build_request {
    my ($text, $more) = @_;
    my ($line, $body) = split /\n/, $text, 2;
    $line =~ s/\s+\z//;
    $body =~ s/\n\z// if defined $body;   # the section's last newline

    my $req = "$line HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
    $req .= "$_\r\n" for grep { /\S/ } split /\n/, $more // '';
    $req .= 'Content-Length: ' . length($body) . "\r\n"
        if defined $body && length $body;

    return "$req\r\n" . ($body // '');
}


# $req as build_request() takes it, or raw bytes (with their blank line)
sub http_request {
    my ($req, $timeout, $port) = @_;
    $req = build_request($req, '') unless $req =~ /\r\n\r\n/;
    return send_request($req, $timeout || 5, $port);
}


# One request on a fresh connection to 127.0.0.1:$port; reads until the
# response is complete or EOF, and gives up after $timeout seconds
# (scaled by TEST_NGINX_SLOWDOWN).
sub send_request {
    my ($raw, $timeout, $port) = @_;
    $timeout = slow($timeout);
    my $deadline = time + $timeout;

    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $port, Proto => 'tcp',
                                     Timeout => $timeout)
        or return { error => "cannot connect to port $port: $!", raw => '' };
    binmode $sock;

    # nginx may answer and close before reading all of a bad request
    local $SIG{PIPE} = 'IGNORE';
    my $off = 0;
    while ($off < length $raw) {
        my $n = syswrite $sock, $raw, length($raw) - $off, $off;
        last unless $n;
        $off += $n;
    }

    my $head_only = $raw =~ /^HEAD /;
    my $sel = IO::Select->new($sock);
    my $buf = '';

    while (!parse_response($buf, $head_only)->{complete}) {
        my $left = $deadline - time;
        if ($left <= 0) {
            close $sock;
            return { error => "no complete response within ${timeout}s",
                     raw => $buf };
        }
        next unless $sel->can_read($left);
        my $n = sysread $sock, $buf, 65536, length $buf;
        last unless $n;                     # EOF or reset
    }

    close $sock;
    return parse_response($buf, $head_only);
}


sub parse_response {
    my ($buf, $head_only) = @_;

    return { error => "no HTTP status line in response",
             raw => $buf }
        unless $buf =~ m{\AHTTP/\d\.\d (\d{3})[^\r\n]*\r\n(.*?)\r\n\r\n}s;

    my ($status, $head) = ($1, $2);
    my $body = substr $buf, $+[0];
    my %headers;

    for (split /\r\n/, $head) {
        my ($name, $value) = /^([^:]+):\s*(.*)$/ or next;
        $headers{lc $name} //= $value;
    }

    my $res = { status => $status, headers => \%headers, body => $body,
                raw => $buf };

    if ($head_only || $status =~ /^(?:1..|204|304)$/) {
        $res->{body} = '';
        $res->{complete} = 1;

    } elsif (($headers{'transfer-encoding'} // '') =~ /chunked/i) {
        ($res->{body}, $res->{complete}) = decode_chunked($body);

    } elsif (defined $headers{'content-length'}) {
        my $len = $headers{'content-length'};
        $res->{complete} = length $body >= $len;
        $res->{body} = substr $body, 0, $len;
    }

    return $res;
}


sub decode_chunked {
    my $raw = shift;
    my $out = '';

    while ($raw =~ s/\A([0-9a-fA-F]+)[^\r\n]*\r\n//) {
        my $size = hex $1;
        return ($out, $raw =~ /\r\n\z/ ? 1 : 0) if $size == 0;
        return ($out, 0) if length $raw < $size + 2;
        $out .= substr $raw, 0, $size;
        substr($raw, 0, $size + 2) = '';
    }

    return ($out, 0);
}


# something listens on 127.0.0.1:$port
sub port_open {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 1);
    return $s ? 1 : 0;
}


1;
