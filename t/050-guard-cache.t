# The route guard's per-worker verdict cache (route_guard_cache on, the
# default): a change to the routes tree must be seen by the very next
# request, on every worker, without a reload, even in a tight loop; and
# $route_version must stay put while a script's file is unchanged and
# move when it is replaced or modified.
#
# The loops run in --- setup: every request is on a new connection (the
# harness sends "Connection: close"), so with two workers they spread
# over both; X-Worker ($pid) tells which worker answered.  A loop
# collects every response that does not match the state just written and
# dies with them at the end, so it counts as one failed check (the
# harness plans its checks from the sections, not from the setup code).
# Response bodies are not checked after a rewrite: with lua_code_cache on
# lua-nginx-module keeps serving the chunk it compiled first for a path.

use FindBin;
use lib $FindBin::Bin;
use TestGateway;

my $config = <<'_EOC_';
    location ~ ^/lua/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        add_header X-Route-Result $route_guard_result always;
        add_header X-Route-Version $route_version always;
        add_header X-Worker $pid always;
        content_by_lua_file $route_script;
    }
_EOC_

my $files = <<'_EOF_';
>>> routes/hello.lua
ngx.say("hello")
>>> routes/v1/time.lua
ngx.say("v1/time")
_EOF_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(config => $config) unless exists $block->{config};
    $block->set_value(user_files => $files) unless exists $block->{user_files};
});


# --- helpers for the setup code (package main) ---

# one request on a new connection: status, result, version, worker
sub get {
    my $path = shift;
    my $res = http_request("GET $path");
    die "GET $path: $res->{error}\n" if $res->{error};
    return {
        status  => $res->{status},
        result  => $res->{headers}{'x-route-result'} // '',
        version => $res->{headers}{'x-route-version'} // '',
        worker  => $res->{headers}{'x-worker'} // '?',
        body    => $res->{body},
    };
}

sub show {
    my $r = shift;
    return "status $r->{status} result '$r->{result}' version "
           . "'$r->{version}' worker $r->{worker}";
}


sub expect {
    my ($errs, $ctx, $r, $status, $result) = @_;
    push @$errs, "$ctx: want $status $result, got " . show($r)
        unless $r->{status} == $status && $r->{result} eq $result;
}


# a keep-alive connection: requests on it one after the other
sub keepalive_get {
    my ($sock, $path) = @_;
    my $req = "GET $path HTTP/1.1\r\nHost: localhost\r\n\r\n";
    syswrite($sock, $req) == length $req or die "write: $!\n";
    my $buf = '';
    my $sel = IO::Select->new($sock);
    while (1) {
        my $res = TestGateway::parse_response($buf, 0);
        if ($res->{complete}) {
            return {
                status  => $res->{status},
                result  => $res->{headers}{'x-route-result'} // '',
                version => $res->{headers}{'x-route-version'} // '',
                worker  => $res->{headers}{'x-worker'} // '?',
            };
        }
        die "GET $path: keep-alive response timed out\n"
            unless $sel->can_read(5);
        sysread($sock, $buf, 65536, length $buf) or die "GET $path: EOF\n";
    }
}

sub log_since {
    my $from = shift;
    return TestGateway::read_log($from);
}

# the inotify watches of the workers of the running nginx
sub inotify_watches {
    my $pid = do {
        open my $fh, '<', TestGateway::server_root() . '/logs/nginx.pid'
            or die "nginx.pid: $!\n";
        my $p = <$fh>; chomp $p; $p;
    };
    my $n = 0;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // next;
        next unless $line =~ /^(\d+) .*\) \S+ (\d+) /s && $2 == $pid;
        my $kid = $1;
        for my $fdinfo (glob "/proc/$kid/fdinfo/*") {
            open my $fi, '<', $fdinfo or next;
            $n += grep { /^inotify wd:/ } <$fi>;
        }
    }
    return $n;
}

our $BytecodeMaker = <<'_EOC_';
    location = /mkbc {
        content_by_lua_block {
            local f = assert(loadstring("ngx.say('from bytecode')"))
            ngx.print(string.dump(f))
        }
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: an unchanged route keeps its version in every worker
--- workers: 2
--- setup
my (%version, %seen, @errs);
for my $i (1 .. 200) {
    my $r = get('/lua/hello');
    $seen{$r->{worker}}++;
    expect(\@errs, "request $i", $r, 200, 'ok');
    push @errs, "request $i: empty version: " . show($r)
        unless $r->{version} =~ /^\d+$/;
    $version{$r->{worker}} //= $r->{version};
    push @errs, "request $i: version moved from $version{$r->{worker}}: "
                . show($r)
        unless $r->{version} eq $version{$r->{worker}};
}
verdict('unchanged route', \@errs);
both_workers('unchanged route', \%seen);
--- request
GET /lua/hello
--- response_body
hello
--- response_headers
X-Route-Result: ok
--- no_error_log
[error]


=== TEST 2: delete and re-create: the very next request sees it (300 cycles, 2 workers)
--- workers: 2
--- setup
my (%seen, @errs);
for my $i (1 .. 300) {
    unlink 'routes/hello.lua' or die "unlink: $!";
    unlink 'routes/v1/time.lua' or die "unlink: $!";
    my $r = get('/lua/hello');
    $seen{$r->{worker}}++;
    expect(\@errs, "cycle $i after delete", $r, 404, 'missing');
    $r = get('/lua/v1/time');
    expect(\@errs, "cycle $i after delete (nested)", $r, 404, 'missing');

    write_file('routes/hello.lua', "ngx.say('hello')\n");
    write_file('routes/v1/time.lua', "ngx.say('v1/time')\n");
    $r = get('/lua/hello');
    $seen{$r->{worker}}++;
    expect(\@errs, "cycle $i after create", $r, 200, 'ok');
    $r = get('/lua/v1/time');
    expect(\@errs, "cycle $i after create (nested)", $r, 200, 'ok');
}
verdict('delete/create', \@errs);
both_workers('delete/create', \%seen);
--- timeout: 10
--- request
GET /lua/hello
--- response_headers
X-Route-Result: ok


=== TEST 3: atomic replace by rename: a new version on the next request (200 cycles)
--- workers: 2
--- setup
my (%last, %seen, @errs);
for my $i (1 .. 200) {
    for my $route ('hello', 'v1/time') {
        replace_file("routes/$route.lua", sprintf "ngx.say('%s %04d')\n",
                                                  $route, $i);
        my $r = get("/lua/$route");
        $seen{$r->{worker}}++;
        expect(\@errs, "cycle $i $route", $r, 200, 'ok');
        push @errs, "cycle $i $route: empty version: " . show($r)
            unless $r->{version} =~ /^\d+$/;
        my $key = "$route $r->{worker}";
        push @errs, "cycle $i $route: version did not change: " . show($r)
            if defined $last{$key} && $last{$key} eq $r->{version};
        $last{$key} = $r->{version};

        # and without a change it stays
        my $again = get("/lua/$route");
        my $key2 = "$route $again->{worker}";
        push @errs, "cycle $i $route: version moved without a change "
                    . "(was $last{$key2}): " . show($again)
            if defined $last{$key2} && $r->{worker} eq $again->{worker}
               && $last{$key2} ne $again->{version};
    }
}
verdict('rename-replace', \@errs);
both_workers('rename-replace', \%seen);
--- timeout: 10
--- request
GET /lua/hello
--- response_headers
X-Route-Result: ok


=== TEST 4: in-place rewrite of the same size: a new version on the next request
--- workers: 2
--- setup
my (%last, %seen, @errs);
for my $i (1 .. 200) {
    for my $route ('hello', 'v1/time') {
        rewrite_file("routes/$route.lua", sprintf "ngx.say('%04d')\n", $i);
        my $r = get("/lua/$route");
        $seen{$r->{worker}}++;
        expect(\@errs, "cycle $i $route", $r, 200, 'ok');
        my $key = "$route $r->{worker}";
        push @errs, "cycle $i $route: version did not change: " . show($r)
            if defined $last{$key} && $last{$key} eq $r->{version};
        $last{$key} = $r->{version};
    }
}
verdict('in-place rewrite', \@errs);
both_workers('in-place rewrite', \%seen);
--- timeout: 10
--- request
GET /lua/hello
--- response_headers
X-Route-Result: ok


=== TEST 5: good script -> FIFO, directory, chmod 000, bytecode and back, seen at once
--- workers: 2
--- setup
my @errs;
for my $i (1 .. 30) {
    my $r;
    for (1 .. 4) {      # cache it in both workers
        expect(\@errs, "cycle $i good", get('/lua/hello'), 200, 'ok');
    }

    unlink 'routes/hello.lua' or die "unlink: $!";
    POSIX::mkfifo('routes/hello.lua', 0644) or die "mkfifo: $!";
    expect(\@errs, "cycle $i fifo", get('/lua/hello'), 503, 'not_regular');
    expect(\@errs, "cycle $i fifo again", get('/lua/hello'), 503,
           'not_regular');

    unlink 'routes/hello.lua' or die "unlink: $!";
    write_file('routes/hello.lua', "ngx.say('hello')\n");
    expect(\@errs, "cycle $i fifo -> text", get('/lua/hello'), 200, 'ok');

    unlink 'routes/hello.lua' or die "unlink: $!";
    mkdir 'routes/hello.lua' or die "mkdir: $!";
    expect(\@errs, "cycle $i dir", get('/lua/hello'), 503, 'not_regular');
    expect(\@errs, "cycle $i dir again", get('/lua/hello'), 503,
           'not_regular');
    rmdir 'routes/hello.lua' or die "rmdir: $!";
    write_file('routes/hello.lua', "ngx.say('hello')\n");
    expect(\@errs, "cycle $i dir -> text", get('/lua/hello'), 200, 'ok');
    expect(\@errs, "cycle $i dir -> text again", get('/lua/hello'), 200,
           'ok');

    chmod 0000, 'routes/hello.lua' or die "chmod: $!";
    expect(\@errs, "cycle $i chmod 000", get('/lua/hello'), 503,
           'unreadable');
    expect(\@errs, "cycle $i chmod 000 again", get('/lua/hello'), 503,
           'unreadable');
    chmod 0644, 'routes/hello.lua' or die "chmod: $!";
    expect(\@errs, "cycle $i chmod 644", get('/lua/hello'), 200, 'ok');
    expect(\@errs, "cycle $i chmod 644 again", get('/lua/hello'), 200, 'ok');

    rewrite_file('routes/hello.lua', "\x1bLJ\x02\x00\x00\x00garbage");
    expect(\@errs, "cycle $i bytecode", get('/lua/hello'), 503, 'bytecode');
    expect(\@errs, "cycle $i bytecode again", get('/lua/hello'), 503,
           'bytecode');
    rewrite_file('routes/hello.lua', "ngx.say('hello')\n");
    expect(\@errs, "cycle $i bytecode -> text", get('/lua/hello'), 200, 'ok');

    # the same in a subdirectory
    chmod 0000, 'routes/v1/time.lua' or die "chmod: $!";
    expect(\@errs, "cycle $i nested chmod 000", get('/lua/v1/time'), 503,
           'unreadable');
    chmod 0644, 'routes/v1/time.lua' or die "chmod: $!";
    expect(\@errs, "cycle $i nested chmod 644", get('/lua/v1/time'), 200,
           'ok');
}
verdict('file kinds', \@errs);
--- timeout: 5
--- request
GET /lua/hello
--- response_body
hello


=== TEST 6: nested: renamed directories and new subdirectories are seen at once
--- workers: 2
--- setup
my @errs;
my ($from, $to) = ('v1', 'v2');
for my $i (1 .. 50) {
    for (1 .. 4) {
        expect(\@errs, "cycle $i $from/time cached", get("/lua/$from/time"),
               200, 'ok');
    }
    rename "routes/$from", "routes/$to" or die "rename: $!";
    expect(\@errs, "cycle $i $from/time after rename", get("/lua/$from/time"),
           404, 'missing');
    expect(\@errs, "cycle $i $to/time after rename", get("/lua/$to/time"),
           200, 'ok');
    expect(\@errs, "cycle $i $from/time again", get("/lua/$from/time"),
           404, 'missing');

    mkdir "routes/n$i" or die "mkdir: $!";
    chmod 0755, "routes/n$i";
    write_file("routes/n$i/new.lua", "ngx.say('new')\n");
    expect(\@errs, "cycle $i new subdirectory", get("/lua/n$i/new"),
           200, 'ok');

    # a deeper tree made while running
    write_file("routes/n$i/a/b/deep.lua", "ngx.say('deep')\n");
    expect(\@errs, "cycle $i deep", get("/lua/n$i/a/b/deep"), 200, 'ok');
    rename "routes/n$i/a", "routes/n$i/c" or die "rename: $!";
    expect(\@errs, "cycle $i deep renamed away", get("/lua/n$i/a/b/deep"),
           404, 'missing');
    expect(\@errs, "cycle $i deep renamed", get("/lua/n$i/c/b/deep"),
           200, 'ok');

    ($from, $to) = ($to, $from);
}
verdict('nested', \@errs);
--- timeout: 10
--- request eval
["GET /lua/v1/time", "GET /lua/v2/time", "GET /lua/n1/new"]
--- error_code eval
[200, 404, 200]


=== TEST 7: chmod 000 on a subdirectory, then back
--- workers: 2
--- setup
my @errs;
for my $i (1 .. 30) {
    for (1 .. 4) {
        expect(\@errs, "cycle $i cached", get('/lua/v1/time'), 200, 'ok');
    }
    chmod 0000, 'routes/v1' or die "chmod: $!";
    my $r = get('/lua/v1/time');
    push @errs, "cycle $i dir 000: want 503 unreadable or 404, got "
                . show($r)
        unless $r->{status} == 503 && $r->{result} eq 'unreadable'
               || $r->{status} == 404;
    chmod 0755, 'routes/v1' or die "chmod: $!";
    expect(\@errs, "cycle $i dir 755", get('/lua/v1/time'), 200, 'ok');
}
verdict('directory chmod', \@errs);
--- request
GET /lua/v1/time
--- response_body
v1/time


=== TEST 8: symlinked route: served, and its version follows the target
--- workers: 2
--- init
symlink 'real.lua', 'routes/alias.lua' or die $!;
symlink '../real.lua', 'routes/v1/up.lua' or die $!;
write_file('routes/real.lua', "ngx.say('real 0000')\n");
--- setup
my (%last, %seen, @errs);
for my $i (1 .. 200) {
    replace_file('routes/real.lua', sprintf "ngx.say('real %04d')\n", $i);
    for my $route ('alias', 'v1/up') {
        my $r = get("/lua/$route");
        $seen{$r->{worker}}++;
        expect(\@errs, "cycle $i $route", $r, 200, 'ok');
        push @errs, "cycle $i $route: empty version: " . show($r)
            unless $r->{version} =~ /^\d+$/;
        my $key = "$route $r->{worker}";
        push @errs, "cycle $i $route: version did not change: " . show($r)
            if defined $last{$key} && $last{$key} eq $r->{version};
        $last{$key} = $r->{version};
    }
}
verdict('symlink, target replaced', \@errs);
both_workers('symlink, target replaced', \%seen);

# unchanged: the version stays
%last = ();
for my $i (1 .. 50) {
    my $r = get('/lua/alias');
    $last{$r->{worker}} //= $r->{version};
    push @errs, "request $i: alias version moved from $last{$r->{worker}}: "
                . show($r)
        unless $last{$r->{worker}} eq $r->{version};
}
verdict('symlink, unchanged', \@errs);

# the target deleted: the alias is missing at once, back when re-created
for my $i (1 .. 50) {
    unlink 'routes/real.lua' or die "unlink: $!";
    expect(\@errs, "cycle $i target deleted", get('/lua/alias'), 404,
           'missing');
    write_file('routes/real.lua', "ngx.say('real')\n");
    expect(\@errs, "cycle $i target back", get('/lua/alias'), 200, 'ok');
}
verdict('symlink, target deleted', \@errs);
--- timeout: 10
--- request
GET /lua/alias
--- response_headers
X-Route-Result: ok


=== TEST 9: symlinked route: in-place rewrite of the target (same size) changes the version
--- workers: 2
--- init
symlink 'real.lua', 'routes/alias.lua' or die $!;
write_file('routes/real.lua', "ngx.say('real 0000')\n");
--- setup
my (%last, %seen, @errs);
for my $i (1 .. 200) {
    rewrite_file('routes/real.lua', sprintf "ngx.say('real %04d')\n", $i);
    my $r = get('/lua/alias');
    $seen{$r->{worker}}++;
    expect(\@errs, "cycle $i", $r, 200, 'ok');
    my $key = $r->{worker};
    push @errs, "cycle $i: version did not change: " . show($r)
        if defined $last{$key} && $last{$key} eq $r->{version};
    $last{$key} = $r->{version};
}
verdict('symlink, target rewritten in place', \@errs);
--- timeout: 10
--- request
GET /lua/alias
--- response_headers
X-Route-Result: ok


=== TEST 10: a route with two hard links is checked every request and versioned
--- workers: 2
--- init
link 'routes/hello.lua', 'routes/twin.lua' or die $!;
--- setup
my (%last, @errs);
for my $i (1 .. 100) {
    # written through the other name: no event names "twin.lua"
    rewrite_file('routes/hello.lua', sprintf "ngx.say('%04d')\n", $i);
    my $r = get('/lua/twin');
    expect(\@errs, "cycle $i", $r, 200, 'ok');
    my $key = $r->{worker};
    push @errs, "cycle $i: version did not change: " . show($r)
        if defined $last{$key} && $last{$key} eq $r->{version};
    $last{$key} = $r->{version};
}
chmod 0000, 'routes/hello.lua' or die "chmod: $!";
expect(\@errs, "chmod 000 through the other name", get('/lua/twin'), 503,
       'unreadable');
chmod 0644, 'routes/hello.lua' or die "chmod: $!";
verdict('hard link', \@errs);
--- request
GET /lua/twin
--- response_headers
X-Route-Result: ok


=== TEST 11: a directory-level event does not change the versions of unchanged files
--- workers: 1
--- log_level: debug
--- user_files
>>> routes/a.lua
ngx.say("a")
>>> routes/v1/b.lua
ngx.say("b")
--- setup
my @errs;
my $log_start = TestGateway::log_size();
my %v = map { $_ => get("/lua/$_")->{version} } qw(a v1/b);
for my $step ('mkdir', 'chmod', 'rename', 'rmdir', 'mkdir nested',
              'touch unrelated') {
    if ($step eq 'mkdir') { mkdir 'routes/unrelated' or die $! }
    if ($step eq 'chmod') { chmod 0700, 'routes/unrelated' or die $! }
    if ($step eq 'rename') { rename 'routes/unrelated', 'routes/other'
                             or die $! }
    if ($step eq 'rmdir') { rmdir 'routes/other' or die $! }
    if ($step eq 'mkdir nested') { mkdir 'routes/v1/sub' or die $! }
    if ($step eq 'touch unrelated') { write_file('routes/v1/c.lua', "x") }
    for my $route (qw(a v1/b)) {
        my $r = get("/lua/$route");
        expect(\@errs, "$step: $route", $r, 200, 'ok');
        push @errs, "$step: $route version $v{$route} became $r->{version}"
            unless $r->{version} eq $v{$route};
    }
}
verdict('directory events', \@errs);
my $log = log_since($log_start);
die "no \"reset cache of\" in the debug log: the directory events were "
    . "not seen (is nginx built --with-debug?)\n"
    unless $log =~ /route guard: reset cache of/;
--- request eval
["GET /lua/a", "GET /lua/v1/b"]
--- response_body eval
["a\n", "b\n"]


=== TEST 12: route_guard_cache off: no version, changes still seen at once
--- workers: 2
--- config
    location ~ ^/lua/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        route_guard_cache off;
        add_header X-Route-Result $route_guard_result always;
        add_header X-Route-Version $route_version always;
        add_header X-Worker $pid always;
        content_by_lua_file $route_script;
    }
--- setup
my (%seen, @errs);
for my $i (1 .. 100) {
    unlink 'routes/hello.lua' or die "unlink: $!";
    my $r = get('/lua/hello');
    $seen{$r->{worker}}++;
    expect(\@errs, "cycle $i after delete", $r, 404, 'missing');
    write_file('routes/hello.lua', "ngx.say('hello')\n");
    $r = get('/lua/hello');
    $seen{$r->{worker}}++;
    expect(\@errs, "cycle $i after create", $r, 200, 'ok');
    push @errs, "cycle $i: a version with the cache off: " . show($r)
        if $r->{version} ne '';
}
verdict('cache off', \@errs);
both_workers('cache off', \%seen);
--- request
GET /lua/hello
--- response_body
hello
--- response_headers
X-Route-Result: ok
!X-Route-Version


=== TEST 13: $route_version is empty unless the result is ok
--- init
mkdir 'routes/dir.lua' or die $!;
--- request eval
["GET /lua/nope", "GET /lua/dir", "GET /lua/hello", "GET /lua/dir"]
--- error_code eval
[404, 503, 200, 503]
--- response_headers eval
["!X-Route-Version", "!X-Route-Version", "X-Route-Result: ok",
 "!X-Route-Version"]


=== TEST 14: one root, two bytecode policies: the cache does not leak one to the other
--- workers: 1
--- config eval
$::BytecodeMaker . <<'_EOC_'
    route_guard_root html/routes;

    location ~ ^/lua/(.+)$ {
        route_guard $1;
        add_header X-Route-Result $route_guard_result always;
        add_header X-Route-Version $route_version always;
        content_by_lua_file $route_script;
    }
    location ~ ^/bc/(.+)$ {
        route_guard $1;
        route_guard_bytecode on;
        add_header X-Route-Result $route_guard_result always;
        add_header X-Route-Version $route_version always;
        content_by_lua_file $route_script;
    }
_EOC_
--- setup
my $res = http_request("GET /mkbc");
die "no bytecode: $res->{status}" unless $res->{status} == 200
                                         && $res->{body} =~ /^\x1bLJ/;
write_file('routes/bc.lua', $res->{body});
write_file('routes/bc2.lua', $res->{body});
--- request eval
["GET /bc/bc", "GET /lua/bc", "GET /bc/bc", "GET /lua/bc",
 "GET /lua/bc2", "GET /bc/bc2", "GET /lua/bc2", "GET /bc/bc2"]
--- error_code eval
[200, 503, 200, 503, 503, 200, 503, 200]
--- response_headers eval
["X-Route-Result: ok", "X-Route-Result: bytecode",
 "X-Route-Result: ok", "X-Route-Result: bytecode",
 "X-Route-Result: bytecode", "X-Route-Result: ok",
 "X-Route-Result: bytecode", "X-Route-Result: ok"]
--- response_body_like eval
["from bytecode", "503", "from bytecode", "503",
 "503", "from bytecode", "503", "from bytecode"]


=== TEST 15: two roots on one directory, two bytecode policies
--- workers: 2
--- config
    location ~ ^/lua/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        add_header X-Route-Result $route_guard_result always;
        content_by_lua_file $route_script;
    }
    location ~ ^/bc/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        route_guard_bytecode on;
        add_header X-Route-Result $route_guard_result always;
        content_by_lua_block { ngx.say("allowed") }
    }
--- init
write_file('routes/bc.lua', "\x1bLJ\x02\x00\x00\x00garbage");
--- request eval
["GET /bc/bc", "GET /lua/bc", "GET /bc/bc", "GET /lua/bc", "GET /bc/bc",
 "GET /lua/hello", "GET /bc/hello"]
--- error_code eval
[200, 503, 200, 503, 200, 200, 200]
--- response_headers eval
["X-Route-Result: ok", "X-Route-Result: bytecode", "X-Route-Result: ok",
 "X-Route-Result: bytecode", "X-Route-Result: ok", "X-Route-Result: ok",
 "X-Route-Result: ok"]


=== TEST 16: a flood of distinct missing names grows nothing, valid routes still work
--- workers: 2
--- setup
my @errs;
# both workers watch the root and v1/ once they served v1/time
my %warm;
for (1 .. 200) {
    $warm{get('/lua/v1/time')->{worker}} = 1;
    last if keys %warm == 2;
}
both_workers('warm-up', \%warm);
my $watches = inotify_watches();
die "want 4 inotify watches (root and v1/ in 2 workers), have $watches\n"
    unless $watches == 4;
for my $i (1 .. 2000) {
    my $name = $i % 3 == 0 ? "nope$i"
             : $i % 3 == 1 ? "v1/nope$i"
             :               "nodir$i/x/y";
    my $r = get("/lua/$name");
    expect(\@errs, "missing $name", $r, 404, 'missing');
}
my $after = inotify_watches();
push @errs, "inotify watches grew from $watches to $after"
    if $after > $watches;
verdict('missing flood', \@errs);
--- timeout: 10
--- log_level: warn
--- request eval
["GET /lua/hello", "GET /lua/v1/time"]
--- response_body eval
["hello\n", "v1/time\n"]
--- no_error_log
[warn]
[error]


=== TEST 17: the routes root renamed away while running: no crash, 503 mismatch for its routes, 404 for the others
--- workers: 2
--- setup
my @errs;
my %pids;
for (1 .. 6) {
    $pids{get('/lua/hello')->{worker}} = 1;
    get('/lua/v1/time');
}
rename 'routes', 'routes.gone' or die "rename: $!";
# The guard checks beneath the root's descriptor, which follows the
# directory: the routes there pass the check, but the content handler's
# path no longer leads to them (503 mismatch); the others are missing.
my %want = ('hello' => [503, 'mismatch'], 'v1/time' => [503, 'mismatch'],
            'nope' => [404, 'missing'], 'v1/nope' => [404, 'missing']);
for my $i (1 .. 20) {
    for my $route (sort keys %want) {
        my $r = get("/lua/$route");
        expect(\@errs, "request $i $route", $r, @{ $want{$route} });
        push @errs, "request $i $route: a new worker $r->{worker}"
            unless $pids{$r->{worker}} || keys %pids < 2;
    }
}
verdict('root renamed', \@errs);
--- request
GET /lua/nope
--- error_code: 404


=== TEST 17b: a new tree at the root's path is never run unchecked
The guard checks beneath the root's descriptor, the content handler opens
the path: after the root directory is replaced, the path leads into the
new, unchecked tree.  A route present in both (here a symlink out of the
new tree) is refused as a mismatch; one only in the new tree is missing.
--- workers: 2
--- init
write_file('outside.lua', "ngx.say('UNCHECKED outside the root')\n");
--- setup
for (1 .. 6) { get('/lua/hello') }
rename 'routes', 'routes.gone' or die "rename: $!";
mkdir 'routes' or die "mkdir: $!";
chmod 0755, 'routes';
symlink '../outside.lua', 'routes/hello.lua' or die "symlink: $!";
symlink '../outside.lua', 'routes/fresh.lua' or die "symlink: $!";
my @errs;
for my $i (1 .. 10) {
    expect(\@errs, "request $i hello", get('/lua/hello'), 503, 'mismatch');
    expect(\@errs, "request $i fresh", get('/lua/fresh'), 404, 'missing');
}
verdict('root replaced', \@errs);
--- request eval
["GET /lua/hello", "GET /lua/fresh"]
--- error_code eval
[503, 404]
--- response_body_unlike eval
[qr/UNCHECKED/, qr/UNCHECKED/]


=== TEST 18: the routes root deleted while running: 404 at once, no crash
Only the statuses are checked.  The guard's own O_PATH descriptor of the
root keeps the deleted directory's dentry referenced, so inotify sends no
IN_DELETE_SELF/IN_IGNORED for the root and the "routes root ... is gone"
warning of ngx_http_route_guard_cache.c is not logged; the rm -rf still
reaches the workers as events for the files and subdirectories in it.
--- workers: 2
--- setup
for (1 .. 6) { get('/lua/hello'); get('/lua/v1/time') }
system('rm', '-rf', 'routes') == 0 or die "rm -rf routes failed";
my @errs;
for my $i (1 .. 20) {
    for my $route ('hello', 'v1/time', 'nope') {
        expect(\@errs, "request $i $route", get("/lua/$route"), 404,
               'missing');
    }
}
verdict('root deleted', \@errs);
--- request eval
["GET /lua/hello", "GET /lua/v1/time"]
--- error_code eval
[404, 404]


=== TEST 19: keep-alive connections see a change on their next request
One kept-alive connection per worker; after every change, a request on
each of them.
--- workers: 2
--- setup
my @errs;
my %sock;       # worker pid => a connection it accepted
for my $try (1 .. 100) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => TestGateway::server_port(),
                                  Proto => 'tcp') or die "connect: $!";
    my $w = keepalive_get($s, '/lua/hello')->{worker};
    if ($sock{$w}) { close $s } else { $sock{$w} = $s }
    last if keys %sock == 2;
    Time::HiRes::sleep(0.01);
}
both_workers('keep-alive connections', \%sock);
my %last;
for my $i (1 .. 200) {
    unlink 'routes/hello.lua' or die "unlink: $!";
    for my $w (sort keys %sock) {
        my $r = keepalive_get($sock{$w}, '/lua/hello');
        expect(\@errs, "cycle $i after delete", $r, 404, 'missing');
        push @errs, "cycle $i: connection of $w answered by $r->{worker}"
            unless $r->{worker} eq $w;
    }
    write_file('routes/hello.lua', "ngx.say('hello')\n");
    for my $w (sort keys %sock) {
        expect(\@errs, "cycle $i after create",
               keepalive_get($sock{$w}, '/lua/hello'), 200, 'ok');
    }
    replace_file('routes/v1/time.lua', sprintf "ngx.say('%04d')\n", $i);
    for my $w (sort keys %sock) {
        my $r = keepalive_get($sock{$w}, '/lua/v1/time');
        expect(\@errs, "cycle $i v1/time replaced", $r, 200, 'ok');
        push @errs, "cycle $i v1/time: version did not change: " . show($r)
            if defined $last{$w} && $last{$w} eq $r->{version};
        $last{$w} = $r->{version};
    }
}
close $_ for values %sock;
verdict('keep-alive', \@errs);
--- timeout: 10
--- request
GET /lua/hello
--- response_body
hello



=== TEST 20: roots of every path length modulo 8 are watched and versioned
--- config eval
# The root's path goes to inotify_add_watch() as a C string.  It was not
# NUL-terminated: the watch failed, and the cache was off, whenever the
# byte after it in the configuration's pool was not zero, as with some
# path lengths, in memory reused after a reload, or under ASan.
my $conf = '';
$conf .= <<"_EOC_" for map { 'r' x $_ } 1 .. 8;
    location ~ ^/$_/(.+)\$ {
        route_guard \$1;
        route_guard_root html/$_;
        add_header X-Route-Version \$route_version always;
        content_by_lua_file \$route_script;
    }
_EOC_
$conf;
--- user_files eval
my $files = '';
$files .= ">>> " . ('r' x $_) . "/a.lua\nngx.say('$_')\n" for 1 .. 8;
$files;
--- setup
my @errs;
for my $n (1 .. 8) {
    my $r = get('/' . ('r' x $n) . '/a');
    push @errs, "root of $n r: " . show($r)
        unless $r->{status} == 200 && $r->{version} ne '';
}
verdict('roots', \@errs);
--- request
GET /rrrrrrrr/a
--- response_body
8
--- no_error_log
inotify_add_watch
