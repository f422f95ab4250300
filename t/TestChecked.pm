package TestChecked;

# What a checked run changes in the tests: nginx built with AddressSanitizer
# and UndefinedBehaviorSanitizer (make test-asan), or run under valgrind's
# memcheck (make test-valgrind).  Used by t/TestGateway.pm and by the test
# files that start the shipped configuration with gateway/bin/gatewayctl.
#
#   TEST_NGINX_USE_VALGRIND=1  nginx (and the "nginx -t" of the harness)
#                              runs under valgrind; each process writes
#                              DIR/valgrind.<pid>, DIR given by the caller
#   TEST_NGINX_VALGRIND        the valgrind to run (default: valgrind)
#   ASAN_OPTIONS, UBSAN_OPTIONS
#                              a sanitized nginx: the options are kept for
#                              the workers and the privileged agent (env
#                              directives)
#   TEST_NGINX_SLOWDOWN        factor for every timeout and wait of the
#                              tests: 20 under valgrind, 2 with a
#                              sanitizer, 1 otherwise unless given
#
# (The kind of run and the slowdown are decided in t/TestGateway/Util.pm;
# slow() and checked() are exported here too.)
#
# A valgrind report is a non-empty log file (valgrind runs with -q, so
# that its log holds errors only).  The sanitizers report on stderr,
# which is the error log of a running nginx and the output of "nginx -t";
# no_reports_ok() looks for both.

use strict;
use warnings;

use Test::More ();

use TestGateway::Util qw(repo_root slow checked slurp uid_of listening_of);

use base 'Exporter';
our @EXPORT = qw(slow checked env_directives nginx_command nginx_wrapper
                 report_files no_reports_ok process_title);

my $RepoRoot = repo_root();
my @SanitizerVars = @TestGateway::Util::SanitizerVars;
my $Valgrind = $TestGateway::Util::Valgrind;


# nginx clears the environment of its workers (and of the privileged agent,
# whose "nginx -t" would then run with the sanitizers' defaults: leak
# checking on, UBSan going on after a report), unless the configuration
# keeps a variable with "env".  Only the variables that are set are named, so a
# plain run gets the same configuration as before.
sub env_directives () {
    return join '', map { "env $_;\n" } grep { defined $ENV{$_} }
                                        @SanitizerVars;
}


# The command that runs nginx with @args: under valgrind, valgrind's
# command line first, writing $logdir/valgrind.<pid> (forked workers get
# their own file; the files are opened before the workers leave root).
sub nginx_command {
    my ($logdir, $binary, @args) = @_;
    return ($binary, @args) unless $Valgrind;
    return ($ENV{TEST_NGINX_VALGRIND} || 'valgrind',
            '--tool=memcheck', '-q', '--num-callers=50',
            '--error-limit=no', '--leak-check=full',
            '--show-leak-kinds=definite', '--errors-for-leak-kinds=definite',
            "--suppressions=$RepoRoot/t/valgrind.supp",
            '--gen-suppressions=all',
            "--log-file=$logdir/valgrind.%p",
            $binary, @args);
}


# env_directives() at the top of a configuration file's text
sub with_env_directives {
    my $conf = shift;
    return env_directives() . $conf;
}


# For gateway/bin/gatewayctl, which runs NGINX_BIN: under valgrind a
# script in $dir that runs the binary the way nginx_command() does;
# otherwise the binary itself.
sub nginx_wrapper {
    my ($dir, $logdir, $binary) = @_;
    return $binary unless $Valgrind;

    my $path = "$dir/nginx-valgrind";
    my $cmd = join ' ', map { "'$_'" } nginx_command($logdir, $binary);
    open my $fh, '>', $path or die "$path: $!\n";
    print $fh "#!/bin/sh\nexec $cmd \"\$\@\"\n";
    close $fh or die "$path: $!\n";
    chmod 0755, $path;
    return $path;
}


# The non-empty valgrind logs in @dirs, as { path => size }, so that a
# caller can tell new reports from those it saw before.
sub report_files {
    my @dirs = @_;
    my %files;
    for my $f (map { glob "$_/valgrind.*" } @dirs) {
        my $size = -s $f;
        $files{$f} = $size if $size;
    }
    return \%files;
}


# the first line of each ASan or UBSan report in $text (UBSan names the
# source position: lua-nginx-module logs Lua errors as "runtime error")
my $SanitizerReport = qr{\S+:\d+:\d+:\ runtime\ error:\ 
                         |==\d+==ERROR:\ \w+Sanitizer
                         |\w+Sanitizer:DEADLYSIGNAL}x;

sub sanitizer_reports {
    my $text = shift;
    return grep { /$SanitizerReport/ } split /\n/, $text;
}


# One check: no valgrind log in @$dirs is new or has grown since $before
# (report_files()), and no sanitizer report is in @texts (error logs,
# outputs of nginx -t); what there is goes to the diagnostics.
sub no_reports_ok {
    my ($name, $before, $dirs, @texts) = @_;
    my $now = report_files(@$dirs);
    my @new = grep { ($before->{$_} // 0) != $now->{$_} } sort keys %$now;
    my @lines = map { sanitizer_reports($_) } @texts;

    my $tb = Test::More->builder;
    $tb->ok(!@new && !@lines, $name) and return 1;

    $tb->diag("sanitizer report: $_") for @lines;
    $tb->diag("==> $_ <==\n" . slurp($_)) for @new;
    return 0;
}


# nginx's process title ("nginx: worker process"), which nginx writes over
# its argv.  Under valgrind that is the client's copy of argv, and /proc
# shows valgrind's command line instead; there the title is told from
# what the process does.  A child of a valgrind'ed nginx that keeps its
# parent's user (root) and holds no listening socket is the privileged
# agent; one that runs as another user (nobody) is a worker, shutting
# down once it holds no listening socket.  A child that is still root
# and holds them has not set its title yet: like a forked nginx child,
# it shows the master's.  (Without root, workers keep the user too, and
# one that holds the listening sockets is a worker.)
sub process_title {
    my $pid = shift;
    my $cmdline = slurp("/proc/$pid/cmdline");
    (my $title = $cmdline) =~ s/\0.*//s;
    $title =~ s/\s+\z//;
    return $title unless $Valgrind && under_valgrind($cmdline);

    my ($ppid) = slurp("/proc/$pid/stat") =~ /\) \S+ (\d+) /;
    return 'nginx: master process'
        unless $ppid && under_valgrind(slurp("/proc/$ppid/cmdline"));

    my $listens = listening_of($pid);
    my $parent = uid_of($ppid);
    my $as_parent = uid_of($pid) eq $parent;

    return 'nginx: privileged agent process' if $as_parent && !$listens;
    return 'nginx: master process' if $as_parent && $parent eq '0';
    return 'nginx: worker process' if $listens;
    return 'nginx: worker process is shutting down';
}

sub under_valgrind {
    my $cmdline = shift;
    return $cmdline =~ m{^[^\0]*(?:valgrind|memcheck)[^\0]*\0}
           && $cmdline =~ m{\0-p\0};
}


1;
