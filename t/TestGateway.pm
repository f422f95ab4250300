package TestGateway;

# A small Test::Nginx-style harness: the block runner, the nginx.conf
# writer and the control of nginx (start, HUP, stop, error-log slices).
# Files, time and processes are in t/TestGateway/Util.pm, requests and
# responses in t/TestGateway/Socket.pm, checked runs (valgrind, the
# sanitizers) in t/TestChecked.pm; this module exports what the test
# files use of them.
#
# Test::Base parses the "=== TEST N: title" / "--- section" blocks after
# __DATA__; this module does the nginx part: for every block it writes
# t/servroot/conf/nginx.conf and the html/ fixtures, starts a real nginx
# (or reloads it with HUP when TEST_NGINX_USE_HUP=1), sends the requests
# over loopback sockets and checks the responses and the slice of
# logs/error.log written while the block ran.
#
#   use FindBin;
#   use lib $FindBin::Bin;
#   use TestGateway;
#
#   run_tests();
#
#   __DATA__
#
#   === TEST 1: hello
#   --- config
#       location = /t { return 200 "hello\n"; }
#   --- request
#   GET /t
#   --- response_body
#   hello
#
# Sections:
#
#   main_config http_config config   nginx.conf pieces ($TEST_NGINX_* vars
#                                    substituted: SERVER_PORT, SERVROOT,
#                                    HTML_DIR, ROOT and any set in %ENV)
#   user_files    ">>> path" + contents, written under html/
#   init / setup  Perl run in html/ before nginx starts / after it started
#                 (helpers: write_file, replace_file, rewrite_file,
#                 http_request, spread, verdict, both_workers; paths are
#                 relative to html/, which is also in $html_dir)
#   request       "GET /x" (+ body lines); raw_request: exact bytes;
#                 either may be an ARRAY from "eval", one per connection
#   more_headers timeout workers log_level user
#   error_code (200) response_body response_body_like response_body_unlike
#   response_headers ("Name: value", "!Name")
#   error_log no_error_log   this block's slice of logs/error.log
#   must_die      nginx -t must fail; error_log is matched against its output
#                 ("--- must_die: start": nginx itself must refuse to start)
#   allow_alert   do not fail on [alert], [crit], [emerg] in the slice
#
# Per-file defaults: workers(N), log_level('error'),
# add_block_preprocessor(sub { my $block = shift; ... }); a suite's own
# sections: add_sections('attack') (t/TestSandbox.pm).
#
# The plan is computed from the blocks unless the test file calls plan()
# itself.  Environment:
#
#   TEST_NGINX_BINARY        nginx to run (default: build/nginx/sbin/nginx)
#   TEST_NGINX_LOAD_MODULES  space-separated .so paths to load_module
#   TEST_NGINX_SERVER_PORT   port to listen on (default 1984)
#   TEST_NGINX_SERVROOT      the server root (default t/servroot; the
#                            files on t/ShippedGateway.pm add -<name>)
#   TEST_NGINX_USE_HUP       reload with HUP between blocks, not restart
#   TEST_NGINX_LUA_PACKAGE_PATH  default lua_package_path
#   TEST_NGINX_USE_VALGRIND  run nginx under valgrind (t/TestChecked.pm)
#   TEST_NGINX_SLOWDOWN      factor for every timeout and wait
#
# Under valgrind or with a sanitized nginx (ASAN_OPTIONS, UBSAN_OPTIONS
# set), each file ends with one more check: no valgrind or sanitizer
# report from its nginx processes (t/TestChecked.pm).

use Test::Base -base;

use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use Time::HiRes qw(sleep time);

use TestChecked;
use TestGateway::Socket qw(build_request send_request parse_response
                           decode_chunked port_open);
use TestGateway::Util qw(:all);

our @EXPORT = qw(run_tests workers log_level add_block_preprocessor
                 add_sections server_root html_dir server_port
                 write_file replace_file rewrite_file http_request
                 verdict both_workers spread);

my $RepoRoot = repo_root();
my $ServRoot = servroot();
my $HtmlDir  = "$ServRoot/html";
my $Port     = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $Binary   = $ENV{TEST_NGINX_BINARY} || "$RepoRoot/build/nginx/sbin/nginx";
my $UseHup   = $ENV{TEST_NGINX_USE_HUP};
my $Checked  = checked();

# Exported so that config sections and "eval" sections can use them; eval
# sections are evaluated when the blocks are parsed, so set them now.
$ENV{TEST_NGINX_SERVER_PORT} = $Port;
$ENV{TEST_NGINX_SERVROOT}    = $ServRoot;
$ENV{TEST_NGINX_HTML_DIR}    = $HtmlDir;
$ENV{TEST_NGINX_ROOT}        = $RepoRoot;

my $Workers  = 1;
my $LogLevel = 'info';
my @Preprocessors;

# the level of an error.log line (not the same words quoted inside one)
my $Alert = qr{^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(?:alert|crit|emerg)\]};

# error.log byte ranges where [emerg] and friends are expected (must_die,
# allow_alert), left out of the end-of-file check
my @ExemptRanges;

# every nginx pid seen, to prove at the end that none is left behind
my %SeenPids;

# checked runs: the valgrind logs there were before this file ran, and
# what each "nginx -t" printed
my $ReportsBefore;
my @CommandOutputs;

my %KnownSections = map { $_ => 1 } qw(
    main_config http_config config user_files init setup
    request raw_request more_headers timeout
    error_code response_body response_body_like response_body_unlike
    response_headers error_log no_error_log
    must_die allow_alert workers log_level user
    ONLY SKIP LAST
);

umask 022;


# per-file defaults and accessors

sub workers ($)   { $Workers = shift }
sub log_level ($) { $LogLevel = shift }
sub add_block_preprocessor (&) { push @Preprocessors, shift }
sub server_root () { $ServRoot }
sub html_dir ()    { $HtmlDir }
sub server_port () { $Port }
sub add_sections { $KnownSections{$_} = 1 for @_ }

# the harness's children of a master (the name test files know)
sub child_pids { children(@_) }

# GET /x (+ body lines) or raw bytes to the server's port
sub http_request {
    my ($req, $timeout) = @_;
    return TestGateway::Socket::http_request($req, $timeout, $Port);
}


sub run_tests () {
    my @blocks = blocks();

    for my $block (@blocks) {
        $_->($block) for @Preprocessors;
    }

    unless (Test::More->builder->has_plan) {
        my $n = 2;                          # the end-of-file checks
        $n++ if $Checked;
        $n += count_checks($_) for @blocks;
        plan(tests => $n);
    }

    prepare_server_root();

    run_block($_) for @blocks;

    my $stopped = eval { stop_nginx(); 1 };
    diag("stopping nginx: $@") unless $stopped;

    check_whole_log();
    check_no_leftovers();
    check_reports() if $Checked;
}


# A block runs a known number of checks (see count_checks); when a step
# dies (nginx does not start, a hook fails) one failure is reported and
# the rest is skipped, so the plan stays right and the cause is visible.

sub run_block {
    my $block = shift;
    my $tb = Test::More->builder;
    my $planned = count_checks($block);
    my $before = $tb->current_test;

    unless (eval { run_block_steps($block); 1 }) {
        my $err = $@;
        $err =~ s/\s+\z//;
        fail($block->name . " - $err");
    }

    my $done = $tb->current_test - $before;
    $tb->skip($block->name . ' - not reached') for $done + 1 .. $planned;
    diag($block->name . ": harness ran $done checks, planned $planned")
        if $done > $planned;
}


sub run_block_steps {
    my $block = shift;

    for my $s (keys %$block) {
        next if $s =~ /^(?:_|name$|description$|seq_num$|is_filtered$|blocks_object$|original_values$)/;
        die "unknown section \"--- $s\"\n" unless $KnownSections{$s};
    }

    stop_nginx() unless $UseHup;    # restart mode: a fresh nginx per block
    write_html($block);
    write_conf($block);
    run_hook($block, 'init');

    my $log_start = log_size();

    if (exists $block->{must_die}) {
        check_must_die($block, $log_start);
        return;
    }

    if ($UseHup && master_pid()) {
        reload_nginx();
    } else {
        start_nginx();
    }

    run_hook($block, 'setup');

    my $req_start = log_size();
    my @requests = requests_of($block);
    my $timeout = section($block, 'timeout') || 5;     # scaled in send_request

    for my $i (0 .. $#requests) {
        my $res = send_request($requests[$i], $timeout, $Port);
        check_response($block, $i, scalar @requests, $res);
    }

    my $slice = wait_log_slice($req_start, patterns($block, 'error_log'));
    check_log_patterns($block, $slice, $block->name);

    if (exists $block->{allow_alert}) {
        push @ExemptRanges, [$log_start, log_size()];
    } else {
        no_alerts_ok(read_log($log_start), $block->name
                     . " - no [alert], [crit] or [emerg] in error.log");
    }
}


sub count_checks {
    my $block = shift;
    my $n = () = (patterns($block, 'error_log'),
                  patterns($block, 'no_error_log'));

    return 1 + $n if exists $block->{must_die};

    $n++ unless exists $block->{allow_alert};

    my $nreq = () = requests_of($block);
    for my $i (0 .. $nreq - 1) {
        $n++;                               # status code
        for my $s (qw(response_body response_body_like
                      response_body_unlike))
        {
            $n++ if defined per_request($block, $s, $i);
        }
        $n += () = header_checks($block, $i);
    }

    return $n;
}


# Test::Base keeps each section as a list in the block hash; reading the
# hash (not $block->$name) avoids clashes with Test::Base method names.

sub section {
    my ($block, $name) = @_;
    my $v = $block->{$name} or return undef;
    my $value = $v->[0];
    $value =~ s/\s+\z// if defined $value && !ref $value
                           && $name =~ /^(?:timeout|workers|log_level|user|error_code)$/;
    return $value;
}


# A section may be one value for every request or, from "eval", an ARRAY
# with one value per request (Test::Nginx semantics).

sub per_request {
    my ($block, $name, $i) = @_;
    my $v = section($block, $name);
    return ref $v eq 'ARRAY' ? $v->[$i] : $v;
}


sub header_checks {
    my ($block, $i) = @_;
    my $h = per_request($block, 'response_headers', $i);
    return () unless defined $h;
    return grep { /\S/ } split /\n/, $h;
}


# error_log / no_error_log: lines of plain substrings, or from "eval" a
# qr// or an ARRAY of strings and qr//s

sub patterns {
    my ($block, $name) = @_;
    my $v = section($block, $name);
    return () unless defined $v;
    return @$v if ref $v eq 'ARRAY';
    return ($v) if ref $v;
    return map { expand_env($_, $name) } grep { /\S/ } split /\n/, $v;
}


sub expand_env {
    my ($text, $where) = @_;
    $text =~ s{\$(TEST_NGINX_[A-Z0-9_]+)}{
        defined $ENV{$1} ? $ENV{$1}
                         : die "--- $where uses \$$1, which is not set\n"
    }ge;
    return $text;
}


# server root, fixtures and nginx.conf

sub prepare_server_root {
    stop_nginx();                   # left over by an interrupted run
    remove_tree($ServRoot);
    make_path("$ServRoot/conf", "$ServRoot/logs", $HtmlDir);
    $ReportsBefore = report_files("$ServRoot/logs");

    # workers run as nobody when we are root: they must reach html/
    chmod 0755, $ServRoot, "$ServRoot/conf", "$ServRoot/logs", $HtmlDir;

    # under valgrind a process a worker forks (ngx.pipe's child, before
    # its exec) opens a valgrind log of its own, as nobody
    chmod 01777, "$ServRoot/logs" if $TestGateway::Util::Valgrind;

    if ($> == 0) {
        for (my $d = $ServRoot; $d ne '/'; $d = dirname($d)) {
            diag("warning: $d is not world-searchable; nobody cannot"
                 . " read the fixtures") unless ((stat $d)[2] & 01);
        }
    }
}


sub write_html {
    my $block = shift;

    remove_tree($HtmlDir);
    make_path($HtmlDir);
    chmod 0755, $HtmlDir;

    my $files = section($block, 'user_files');
    return unless defined $files;

    # ">>> path" starts a file, its lines follow until the next ">>>"
    my @parts = split /^>>>[ \t]+(\S+)[ \t]*\n/m, $files;
    shift @parts;
    while (my ($path, $content) = splice @parts, 0, 2) {
        write_file("$HtmlDir/$path", expand_env($content // '', 'user_files'));
    }
}


# For loops in "--- setup" code: collect mismatches in a list, then
# verdict() dies with the first ones (one failed check for the block,
# so the plan stays right) when there are any.
sub verdict {
    my ($what, $errs) = @_;
    return unless @$errs;
    my $n = @$errs;
    my @first = @$errs > 8 ? @$errs[0 .. 7] : @$errs;
    die "$what: $n mismatches, first: \n  " . join("\n  ", @first) . "\n";
}


# with two workers, a loop that never reached one of them proves little
sub both_workers {
    my ($what, $seen) = @_;
    my $n = keys %$seen;
    die "$what: only $n worker(s) answered: " . join(' ', keys %$seen)
        . "\n" if $n < 2;
}


# $body->($i) at least $min times and on until both workers answered, at
# most $max times; $body returns the worker that answered
sub spread {
    my ($seen, $min, $max, $body) = @_;
    for my $i (1 .. $max) {
        $seen->{ $body->($i) }++;
        last if $i >= $min && keys %$seen >= 2;
    }
}


sub write_conf {
    my $block = shift;

    my $workers = section($block, 'workers') // $Workers;
    my $level = section($block, 'log_level') // $LogLevel;
    my $main = expand_env(section($block, 'main_config') // '', 'main_config');
    my $http = expand_env(section($block, 'http_config') // '', 'http_config');
    my $server = expand_env(section($block, 'config') // '', 'config');

    my $modules = join '', map { "load_module $_;\n" }
                           split ' ', $ENV{TEST_NGINX_LOAD_MODULES} // '';

    # as root, workers run as nobody so that file permissions mean
    # something (root would read a chmod 000 file)
    my $user = '';
    if ($> == 0) {
        my $who = section($block, 'user');
        $user = defined $who ? "user $who;" : 'user ' . nobody_user() . ';';
    }

    my $lua_path = $ENV{TEST_NGINX_LUA_PACKAGE_PATH}
                   // "$RepoRoot/gateway/lib/?.lua;;";
    my $lua = $http =~ /\blua_package_path\b/
              ? '' : qq{lua_package_path "$lua_path";};

    my $temp = join "\n    ", map { "${_}_temp_path $ServRoot/${_}_temp;" }
                              qw(client_body proxy fastcgi uwsgi scgi);

    # a block may say master_process itself (the gateway refuses "off")
    my $master = $main =~ /^\s*master_process\b/m ? ''
                                                   : 'master_process on;';

    my $conf = <<"_EOC_";
$modules
daemon on;
$master
worker_processes $workers;
error_log logs/error.log $level;
pid logs/nginx.pid;
$user
@{[ env_directives() ]}

$main

events {
    worker_connections 256;
}

http {
    access_log logs/access.log;
    default_type text/plain;
    keepalive_timeout 5;

    $temp

    $lua

$http

    server {
        listen 127.0.0.1:$Port;
        server_name localhost;

$server
    }
}
_EOC_

    write_file("$ServRoot/conf/nginx.conf", $conf);
}


sub nobody_user {
    my @pw = getpwnam('nobody') or return 'nobody';
    my $group = getgrgid($pw[3]) // 'nogroup';
    return "nobody $group";
}


# --- init (before nginx starts) and --- setup (after) run Perl code in
# package main, in the html dir, with $html_dir set.

sub run_hook {
    my ($block, $name) = @_;
    my $code = section($block, $name);
    return unless defined $code;

    chdir $HtmlDir or die "chdir $HtmlDir: $!\n";
    my $ok = eval "package main; my \$html_dir = '$HtmlDir';\n"
                  . "#line 1 \"--- $name\"\n$code;\n1";
    my $err = $@;
    chdir $RepoRoot;
    die "--- $name died: $err" unless $ok;
}


# starting, reloading, stopping

sub start_nginx {
    die "port $Port is already in use\n" if port_open($Port);

    my ($rc, $out) = run_command(nginx_command("$ServRoot/logs", $Binary,
                                               '-p', "$ServRoot/",
                                               '-c', 'conf/nginx.conf'));
    die "nginx failed to start (exit $rc): $out\n" if $rc != 0;

    wait_until(10, sub { master_pid() && port_open($Port) })
        or die "nginx did not come up on port $Port within "
               . slow(10) . "s\n";
}


sub reload_nginx {
    my ($rc, $out) = run_command(nginx_command("$ServRoot/logs", $Binary,
                                               '-p', "$ServRoot/",
                                               '-c', 'conf/nginx.conf', '-t'));
    die "nginx -t failed before HUP: $out\n" if $rc != 0;

    my $pid = master_pid();
    my @old = child_pids($pid);
    kill HUP => $pid;

    # the reload is done when the old workers are gone and new ones run
    wait_until(10, sub { !grep(alive($_), @old) && child_pids($pid) })
        or die "nginx did not reload within " . slow(10) . "s\n";
}


sub stop_nginx {
    my $pid = master_pid() or return;
    my @procs = ($pid, child_pids($pid));
    $SeenPids{$_} = 1 for @procs;

    for my $step (['QUIT', 5], ['TERM', 3], ['KILL', 3]) {
        my ($sig, $wait) = @$step;
        kill $sig, $sig eq 'KILL' ? @procs : $pid;
        if (wait_until($wait, sub { !grep alive($_), @procs })) {
            unlink "$ServRoot/logs/nginx.pid";
            return;
        }
        diag("nginx $pid did not stop on SIG$sig within " . slow($wait)
             . "s");
    }

    die "nginx $pid survived SIGKILL\n";
}


sub master_pid {
    open my $fh, '<', "$ServRoot/logs/nginx.pid" or return undef;
    my $pid = <$fh> // '';
    chomp $pid;
    return $pid =~ /^\d+$/ && alive($pid) ? $pid : undef;
}


# Runs a command with stdout and stderr captured; never waits longer
# than 30s, scaled (nginx -t and the daemonizing start return at once).

sub run_command {
    my @cmd = @_;
    my $out = "$ServRoot/logs/command.out";

    my $pid = spawn($out, @cmd);
    my $rc = reap($pid, 30);
    unless (defined $rc) {
        kill KILL => $pid;
        reap($pid, 3);
        $rc = -1;
    }

    push @CommandOutputs, slurp($out) if $Checked;
    return ($rc, slurp($out));
}


# must_die: the config must be refused; --- error_log is matched against
# what nginx -t printed plus what it appended to error.log.  "--- must_die:
# start" starts nginx instead, for what only a start runs (nginx -t skips
# init_by_lua).

sub check_must_die {
    my ($block, $log_start) = @_;

    my $start = (section($block, 'must_die') // '') =~ /\bstart\b/;
    my ($rc, $out) = run_command(nginx_command("$ServRoot/logs", $Binary,
                                               '-p', "$ServRoot/",
                                               '-c', 'conf/nginx.conf',
                                               $start ? () : '-t'));
    my $what = $start ? 'nginx refuses to start' : 'nginx -t fails';
    ok($rc != 0, $block->name . " - $what") or diag("nginx output: $out");
    stop_nginx() if $start && $rc == 0;

    check_log_patterns($block, $out . read_log($log_start), $block->name);
    push @ExemptRanges, [$log_start, log_size()];
}


# requests

sub requests_of {
    my $block = shift;

    if (exists $block->{raw_request}) {
        my $r = section($block, 'raw_request');
        return ref $r eq 'ARRAY' ? @$r : ($r);
    }

    my $r = section($block, 'request');
    return () unless defined $r;
    my $more = section($block, 'more_headers') // '';
    return map { build_request($_, $more) } ref $r eq 'ARRAY' ? @$r : ($r);
}


# One request on a fresh connection; reads until the response is complete
# or EOF, and gives up after $timeout seconds (scaled by
# TEST_NGINX_SLOWDOWN).  Returns a hash with status, headers (lowercased
# names), body, or error.

# checks

sub check_response {
    my ($block, $i, $n, $res) = @_;
    my $name = $block->name . ($n > 1 ? " (request $i)" : '');

    my $code = per_request($block, 'error_code', $i) // 200;
    $code =~ s/\s+\z//;

    if ($res->{error}) {
        fail("$name - status code ok");
        diag("$res->{error}; got: " . printable($res->{raw} // ''));
    } else {
        is($res->{status}, $code, "$name - status code ok");
    }

    my $body = $res->{body} // '';

    my $want = per_request($block, 'response_body', $i);
    is($body, expand_env($want, 'response_body'),
       "$name - response_body - response is expected")
        if defined $want;

    my $like = per_request($block, 'response_body_like', $i);
    like($body, to_regex($like), "$name - response_body_like - matches")
        if defined $like;

    my $unlike = per_request($block, 'response_body_unlike', $i);
    unlike($body, to_regex($unlike),
           "$name - response_body_unlike - does not match")
        if defined $unlike;

    for my $line (header_checks($block, $i)) {
        if ($line =~ /^\s*!\s*([\w-]+)\s*$/) {
            ok(!exists $res->{headers}{lc $1},
               "$name - header $1 absent")
                or diag("got $1: $res->{headers}{lc $1}");

        } elsif ($line =~ /^\s*([\w-]+)\s*:\s*(.*?)\s*$/) {
            is($res->{headers}{lc $1},
               expand_env($2, 'response_headers'),
               "$name - header $1 ok");

        } else {
            fail("$name - cannot parse response_headers line: $line");
        }
    }
}


sub to_regex {
    my $pat = shift;
    return $pat if ref $pat eq 'Regexp';
    $pat =~ s/\n\z//;
    return qr/$pat/sm;
}


sub check_log_patterns {
    my ($block, $log, $name) = @_;

    for my $p (patterns($block, 'error_log')) {
        ok(log_has($log, $p), "$name - error_log has: " . printable($p))
            or diag("error.log slice:\n$log");
    }

    for my $p (patterns($block, 'no_error_log')) {
        ok(!log_has($log, $p), "$name - no_error_log: " . printable($p))
            or diag("error.log slice:\n$log");
    }
}


sub log_has {
    my ($log, $p) = @_;
    return ref $p eq 'Regexp' ? $log =~ $p : index($log, $p) >= 0;
}


sub no_alerts_ok {
    my ($log, $name) = @_;
    my @bad = grep { /$Alert/ } split /\n/, $log;
    ok(!@bad, $name) or diag(join "\n", @bad);
}


# error.log slices

sub log_size {
    return -s "$ServRoot/logs/error.log" // 0;
}


sub read_log {
    my ($from, $to) = @_;
    open my $fh, '<:raw', "$ServRoot/logs/error.log" or return '';
    seek $fh, $from, 0;
    local $/;
    my $log = <$fh> // '';
    return defined $to ? substr($log, 0, $to - $from) : $log;
}


# Workers write the log as they handle the requests; give them a moment,
# and up to 3s more (scaled) while an expected line is still missing.

sub wait_log_slice {
    my ($from, @want) = @_;
    my $deadline = time + slow(3);
    sleep 0.1;

    while (1) {
        my $log = read_log($from);
        return $log if !grep(!log_has($log, $_), @want) || time > $deadline;
        sleep 0.05;
    }
}


# end-of-file checks

sub check_whole_log {
    my ($log, $pos) = ('', 0);

    for my $r (sort { $a->[0] <=> $b->[0] } @ExemptRanges) {
        $log .= read_log($pos, $r->[0]) if $r->[0] > $pos;
        $pos = $r->[1] if $r->[1] > $pos;
    }
    $log .= read_log($pos);

    no_alerts_ok($log, "$0: error.log has no [alert], [crit] or [emerg]");
}


sub check_no_leftovers {
    my @left = grep { alive($_) } keys %SeenPids;

    # a master we never saw: its command line names our prefix
    for my $cmdline (glob '/proc/[0-9]*/cmdline') {
        my ($pid) = $cmdline =~ m{/proc/(\d+)/};
        push @left, $pid if slurp($cmdline) =~ m{\Q$ServRoot\E/[\0 ]}
                            && alive($pid);
    }

    ok(!@left, "$0: no nginx process left") or diag("left: @left");
    kill KILL => @left if @left;
}


# valgrind writes a process's report when it exits: after stop_nginx();
# the whole error log, with the ranges where [alert] was allowed
sub check_reports {
    no_reports_ok("$0: no valgrind or sanitizer report", $ReportsBefore,
                  ["$ServRoot/logs"], read_log(0), @CommandOutputs);
}


# if the test file dies half way, do not leave nginx running
END {
    eval { stop_nginx() } if defined $ServRoot;
}


1;
