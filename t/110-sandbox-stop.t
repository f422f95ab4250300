# Stopping nginx while a sandboxed request is inside a pathological
# pattern call: the call must end within the script's time budget, so
# that a graceful stop (QUIT, nginx -s quit) lets the request have its
# 503 and then ends every process, and a fast stop (TERM) ends them
# without the master having to kill a worker that does not listen to it.
#
# The location has no instruction budget to speak of (1e12): only the
# clock stops the script, which is the longest a request can stay in a
# pattern call.  Each block's --- setup sends the request(s) on new
# connections, checks that no answer came within 0.1 s (the request is
# inside the matcher), signals the master and then checks that the
# master and every worker are gone within the time budget + 2 s, and
# what each connection got.  A worker that the master had to kill shows
# up as "[alert] ... exited on signal 9", which fails the block's check
# for alerts.  Times scale with TEST_NGINX_SLOWDOWN.  The blocks have no
# request of their own: nginx is gone when setup ends.

use FindBin;
use lib $FindBin::Bin;
use TestGateway;
use TestSandbox;

use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);

workers(2);

# the time budgets of /quit/ and /term/, in seconds before the slowdown;
# TERM's is short: nginx's master sends SIGKILL to the workers left some
# 1.5 s after a TERM, and a worker must have ended by itself before that
my %TimeBudget = (quit => 1, term => 0.5);

$TestSandbox::config = join '',
    TestSandbox::location('quit', 'instructions = 1e12,'
                                  . ' time = $TEST_NGINX_SLOWDOWN'),
    TestSandbox::location('term', 'instructions = 1e12,'
                                  . ' time = 0.5 * $TEST_NGINX_SLOWDOWN'),
    <<'_EOC_';
    location = /pid {
        return 200 "$pid";
    }
_EOC_

# under valgrind even the short budget outlasts the master's patience
add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(allow_alert => '')
        if $block->name =~ /TERM|stop/
           && TestChecked::slow(0.5 + 0.1) > 1.4;
});

my $Binary = $ENV{TEST_NGINX_BINARY}
             || "$FindBin::Bin/../build/nginx/sbin/nginx";


# a request on a new connection, sent; the answer is read by finish()
sub start {
    my $path = shift;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => server_port(), Proto => 'tcp',
                                  Timeout => TestChecked::slow(2))
        or die "connect: $!\n";
    binmode $s;
    my $req = "GET $path HTTP/1.1\r\nHost: localhost\r\n"
              . "Connection: close\r\n\r\n";
    syswrite($s, $req) == length $req or die "write $path: $!\n";
    return $s;
}

# no answer on $s yet
sub still_running {
    my ($s, $what) = @_;
    die "$what: answered within " . TestChecked::slow(0.1)
        . "s, before the signal (not inside the matcher)\n"
        if IO::Select->new($s)->can_read(0);
}

# reads $s to EOF before $deadline: (bytes, whether EOF came)
sub finish {
    my ($s, $deadline) = @_;
    my ($buf, $sel) = ('', IO::Select->new($s));
    while ((my $left = $deadline - time) > 0) {
        next unless $sel->can_read($left);
        my $n = sysread $s, $buf, 65536, length $buf;
        return ($buf, 1) unless $n;       # EOF or reset
    }
    return ($buf, 0);
}

# the master and its two workers, once both answer (new connections
# to /pid until each one did)
sub processes {
    my $master = TestGateway::master_pid() or die "no nginx master\n";
    my %seen;
    my $deadline = time + TestChecked::slow(5);
    for my $i (1 .. 200) {
        my $r = http_request('GET /pid', 5);
        die "GET /pid: " . ($r->{error} // $r->{status}) . "\n"
            if $r->{error} || $r->{status} != 200;
        $seen{ $r->{body} } = 1;
        last if keys %seen == 2 || time > $deadline;
    }
    both_workers('before the signal', \%seen);
    my @workers = sort(TestGateway::child_pids($master));
    die "the workers are @workers, /pid answered @{[ sort keys %seen ]}\n"
        unless "@workers" eq join ' ', sort keys %seen;
    return ($master, @workers);
}

# sends the attacks in @paths (0.1 s apart, each one inside the matcher
# before the next), signals the master with $how->($master), then checks
# the processes and what each connection got ($check->($path, $bytes,
# $errs)); every process gone within the time budget + 2 s
sub stop_during {
    my ($how, $check, @paths) = @_;
    my @procs = processes();
    my @errs;

    my @socks;
    for my $path (@paths) {
        push @socks, start($path);
        sleep TestChecked::slow(0.1);
        still_running($_, $path) for @socks;
    }

    my ($loc) = $paths[0] =~ m{^/(\w+)/};
    my $bound = TestChecked::slow($TimeBudget{$loc} + 2);
    my $t0 = time;
    $how->($procs[0]);

    for my $i (0 .. $#paths) {
        my ($bytes, $eof) = finish($socks[$i], $t0 + $bound);
        Test::More::note(sprintf "%s: %d bytes, %s %.3fs after the signal",
                         $paths[$i], length $bytes,
                         $eof ? 'closed' : 'still open', time - $t0);
        push @errs, "$paths[$i]: the connection was still open "
                    . "${bound}s after the signal" unless $eof;
        $check->($paths[$i], $bytes, \@errs);
        close $socks[$i];
    }

    my $gone;
    while (1) {
        $gone = !grep { TestGateway::alive($_) } @procs;
        last if $gone || time > $t0 + $bound;
        sleep 0.02;
    }
    Test::More::note(sprintf "processes %s %.3fs after the signal",
                     $gone ? 'gone' : 'left', time - $t0);
    unless ($gone) {
        my @left = grep { TestGateway::alive($_) } @procs;
        push @errs, "processes left ${bound}s after the signal: @left";
        kill KILL => @left;      # not for the next block to find
        TestGateway::wait_until(3, sub { !grep { TestGateway::alive($_) }
                                               @left });
    }
    unlink server_root() . '/logs/nginx.pid' unless TestGateway::master_pid();

    verdict('stop', \@errs);
}

# nginx -s <signal>, as an operator does
sub nginx_s {
    my $signal = shift;
    return sub {
        my ($rc, $out) = TestGateway::run_command(TestChecked::nginx_command(
            server_root() . '/logs', $Binary, '-p', server_root() . '/',
            '-c', 'conf/nginx.conf', '-s', $signal));
        die "nginx -s $signal: exit $rc: $out\n" if $rc != 0;
    };
}

sub signal {
    my $sig = shift;
    return sub { kill $sig => shift or die "kill $sig: $!\n" };
}

# the in-flight request got its 503 (the time budget), from a worker of
# its own when there are several
sub got_503 {
    my %by;
    return sub {
        my ($path, $bytes, $errs) = @_;
        my $r = TestGateway::parse_response($bytes);
        my $want = TestSandbox::error_body('time');
        my $w = $r->{headers}{'x-pid'} // '?';
        if (!$r->{complete} || $r->{status} != 503 || $r->{body} ne $want) {
            push @$errs, "$path: want 503 '" . TestGateway::printable($want)
                         . "', got '" . TestGateway::printable($bytes) . "'";
        } elsif ($by{$w}++) {
            push @$errs, "$path: served by worker $w, as an earlier one";
        }
    };
}

# the connection closed: with nothing, or with the whole 503
sub closed {
    return sub {
        my ($path, $bytes, $errs) = @_;
        return if $bytes eq '';
        my $r = TestGateway::parse_response($bytes);
        push @$errs, "$path: want nothing or the 503, got '"
                     . TestGateway::printable($bytes) . "'"
            unless $r->{complete} && $r->{status} == 503
                   && $r->{body} eq TestSandbox::error_body('time');
    };
}

run_tests();

__DATA__

=== TEST 1: nginx -s quit while inside a pathological find: its 503, then all gone
--- user_files
>>> sandbox/a.lua
local n = 40 ngx.say(string.find(string.rep("a", n), string.rep("a?", n) .. string.rep("a", n)))
--- setup
stop_during(nginx_s('quit'), got_503(), '/quit/a')



=== TEST 2: QUIT while both workers are inside pathological patterns
The second request goes to the other worker: the first one is busy.
--- user_files
>>> sandbox/a.lua
local n = 40 ngx.say(string.find(string.rep("a", n), string.rep("a?", n) .. string.rep("a", n)))
>>> sandbox/b.lua
ngx.say((string.gsub(("a"):rep(50), ("a?"):rep(50) .. ("a"):rep(50), "x")))
--- setup
stop_during(signal('QUIT'), got_503(), '/quit/a', '/quit/b')



=== TEST 3: TERM while inside a pathological gsub: closed, all gone
--- user_files
>>> sandbox/b.lua
ngx.say((string.gsub(("a"):rep(50), ("a?"):rep(50) .. ("a"):rep(50), "x")))
--- setup
stop_during(signal('TERM'), closed(), '/term/b')



=== TEST 4: nginx -s stop while both workers are inside pathological patterns
--- user_files
>>> sandbox/a.lua
local n = 40 ngx.say(string.find(string.rep("a", n), string.rep("a?", n) .. string.rep("a", n)))
>>> sandbox/b.lua
ngx.say((string.gsub(("a"):rep(50), ("a?"):rep(50) .. ("a"):rep(50), "x")))
--- setup
stop_during(nginx_s('stop'), closed(), '/term/a', '/term/b')
