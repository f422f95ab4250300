package FleetEtcd;

# What gatewayctl's fleet commands (gateway/bin/fleet-publish and
# gateway/bin/fleet-nodes) say to etcd, through its v3 HTTP/JSON gateway:
# the settings gatewayctl validated, read from the environment; one
# request with endpoint failover, authentication and TLS; and the fleet's
# key layout.
#
#   my $etcd = FleetEtcd->from_env;           # ETCD, FLEET, ETCD_*
#   my $r = $etcd->call('/v3/kv/range', { key => b64($k) });
#   my $kvs = $etcd->range("$prefix/routes/", $revision);
#
# ETCD_TIMEOUT (5) bounds each request, in seconds: a member that
# accepts connections but does not answer (stopped, overloaded) costs
# that much before the next endpoint is tried.
#
# HTTP::Tiny (Perl core) speaks HTTP; for https:// it uses IO::Socket::SSL
# (Debian's libio-socket-ssl-perl), verifying the server's certificate
# against ETCD_CA (or the system's CAs) and presenting ETCD_CERT and
# ETCD_KEY. So the password and the token stay inside this process: no
# command line, temporary file or child's environment ever holds them.
#
# Errors die with one line that says what failed ("etcd at URL: ..."),
# never with a credential: the password is sent in one request body only
# and never printed, the token never leaves the Authorization header.

use strict;
use warnings;

use HTTP::Tiny;
use JSON::PP ();
use MIME::Base64 qw(encode_base64 decode_base64);

use Exporter qw(import);
our @EXPORT_OK = qw(b64 unb64 prefix_end);

# the trees of a fleet: the directory of a published tree, and its key word
our @Trees = ([routes => 'routes'], [modules => 'lib'], [sandbox => 'sandbox']);

my $Json = JSON::PP->new->utf8->canonical;

# gRPC codes etcd answers with when this member cannot serve the request
# but another may: unavailable (no leader, stopping), deadline exceeded
my %TryNext = (4 => 1, 14 => 1);


sub b64   { encode_base64($_[0], '') }
sub unb64 { decode_base64($_[0] // '') }

# the end of etcd's range of keys beginning with $prefix
sub prefix_end {
    my $p = shift;
    $p =~ s/(.)\z/chr(ord($1) + 1)/se;
    return $p;
}


sub from_env {
    my $class = shift;
    my @endpoints = grep { length } split /,/, $ENV{ETCD} // '';
    @endpoints or die "ETCD is not set: the fleet's etcd endpoints\n";
    my $fleet = $ENV{FLEET} // '';
    $fleet =~ /^[A-Za-z0-9_-]{1,64}\z/
        or die "FLEET must be 1 to 64 of A-Z a-z 0-9 _ -\n";

    my $self = bless {
        endpoints => \@endpoints,
        fleet     => $fleet,
        prefix    => "/gateway/$fleet/",
        user      => $ENV{ETCD_USER} // '',
    }, $class;

    if ($self->{user} ne '') {
        my $file = $ENV{ETCD_PASSWORD_FILE} // '';
        open my $fh, '<', $file
            or die "cannot read ETCD_PASSWORD_FILE $file: $!\n";
        my $pw = do { local $/; <$fh> } // '';
        $pw =~ s/\r?\n\z//;     # the one final newline an editor adds
        $self->{password} = $pw;
    }

    my %ssl;
    $ssl{SSL_ca_file}   = $ENV{ETCD_CA}   if $ENV{ETCD_CA};
    $ssl{SSL_cert_file} = $ENV{ETCD_CERT} if $ENV{ETCD_CERT};
    $ssl{SSL_key_file}  = $ENV{ETCD_KEY}  if $ENV{ETCD_KEY};
    if (grep { m{^https://} } @endpoints) {
        eval { require IO::Socket::SSL; 1 }
            or die "https:// endpoints need IO::Socket::SSL"
                   . " (Debian: libio-socket-ssl-perl)\n";
    }

    $self->{http} = HTTP::Tiny->new(
        agent       => 'gatewayctl',
        timeout     => $ENV{ETCD_TIMEOUT} || 5,
        verify_SSL  => 1,
        SSL_options => \%ssl,
        keep_alive  => 1,
    );

    return $self;
}


sub fleet  { $_[0]{fleet} }
sub prefix { $_[0]{prefix} }


# POSTs $body to $path: the decoded answer. Endpoints are tried in order,
# starting with the last one that answered, until one answers; an error
# of etcd's own is final, but for "this member cannot serve" and an
# expired token, which is renewed once.
sub call {
    my ($self, $path, $body) = @_;
    my $data = $Json->encode($body);
    my @tried;

    my $n = @{ $self->{endpoints} };
    my $first = $self->{current} // 0;
    for my $i (map { ($first + $_) % $n } 0 .. $n - 1) {
        my $url = $self->{endpoints}[$i];
        my ($r, $err) = $self->attempt($url, $path, $data);
        if (defined $r) {
            $self->{current} = $i;
            return $r;
        }
        die "$err\n" unless $err =~ s/^next: //;
        push @tried, $err;
    }

    die "no etcd endpoint answers: " . join('; ', @tried) . "\n";
}


# (answer) or (undef, error); an error starting with "next: " lets the
# caller try the next endpoint
sub attempt {
    my ($self, $url, $path, $data) = @_;

    for my $renewed (0, 1) {
        my %headers = ('Content-Type' => 'application/json');
        if ($self->{user} ne '') {
            my ($token, $err) = $self->token($url);
            return (undef, $err) unless defined $token;
            $headers{Authorization} = $token;
        }

        my $res = $self->{http}->post("$url$path",
                                      { headers => \%headers,
                                        content => $data });
        my ($r, $err, $code) = $self->answer($url, $res);
        return $r if defined $r;

        if (defined $code && $code == 16 && !$renewed && $self->{user} ne '')
        {
            delete $self->{token}{$url};   # expired: once more, anew
            next;
        }
        return (undef, $err);
    }
}


# a token of $url's cluster for ETCD_USER, asked for once per endpoint
sub token {
    my ($self, $url) = @_;
    return $self->{token}{$url} if defined $self->{token}{$url};

    my $res = $self->{http}->post("$url/v3/auth/authenticate", {
        headers => { 'Content-Type' => 'application/json' },
        content => $Json->encode({ name => $self->{user},
                                   password => $self->{password} }),
    });
    my ($r, $err) = $self->answer($url, $res);
    return (undef, $err =~ s/: /: authenticating as $self->{user}: /r)
        unless defined $r;
    defined $r->{token}
        or return (undef, "etcd at $url: authentication is not enabled,"
                          . " but ETCD_USER is set");
    return $self->{token}{$url} = $r->{token};
}


# HTTP::Tiny's response: (decoded JSON) or (undef, error, etcd's code)
sub answer {
    my ($self, $url, $res) = @_;
    my $status = $res->{status};

    if ($status == 599) {               # no answer: HTTP::Tiny's own error
        (my $why = $res->{content} // '') =~ s/\s+\z//;
        $why =~ s/ at \S+ line \d+.*//s;
        return (undef, "next: $url: $why");
    }

    my $r = eval { $Json->decode($res->{content} // '') };
    if (ref $r ne 'HASH') {
        return (undef, "etcd at $url: HTTP $status $res->{reason},"
                       . " not etcd's JSON (is it etcd's client URL?)");
    }

    if (defined $r->{error} || defined $r->{code}) {
        my $msg = $r->{message} // $r->{error} // "HTTP $status";
        my $code = $r->{code} // 0;
        my $err = "etcd at $url: $msg (code $code)";
        return (undef, ($TryNext{$code} ? "next: " : "") . $err, $code);
    }

    return (undef, "etcd at $url: HTTP $status $res->{reason}")
        unless $res->{success};

    return $r;
}


# the keys beginning with $prefix as [ [key, value, mod_revision] ] and
# the store's revision, at $revision if given (a consistent snapshot)
sub range {
    my ($self, $prefix, $revision) = @_;
    my %req = (key => b64($prefix), range_end => b64(prefix_end($prefix)));
    $req{revision} = "$revision" if defined $revision;
    my $r = $self->call('/v3/kv/range', \%req);
    my @kvs = map { [ unb64($_->{key}), unb64($_->{value}),
                      $_->{mod_revision} ] } @{ $r->{kvs} // [] };
    return (\@kvs, $r->{header}{revision});
}


1;
