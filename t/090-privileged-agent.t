# The privileged agent (gateway/patches/0001-privileged-agent-process.patch):
# with ngx.process.enable_privileged_agent() in init_by_lua*, the master
# starts one more process beside the workers, "nginx: privileged agent
# process", which runs init_worker_by_lua* (ngx.process.type() says
# "privileged agent" there) and timers, keeps the master's user (root
# here: the workers run as nobody), holds no listening socket, is
# respawned when it dies, replaced on reload and gone on quit.
#
# The process checks run in --- setup (see t/050-guard-cache.t): they
# collect what is wrong and die with it, which counts as one failed
# check.  Processes are found under /proc: the children of the master
# whose command line is the agent's title.  In the agent,
# init_worker_by_lua stores its pid and process type in a shared dict,
# and a timer makes a request to this very server with a cosocket (the
# agent's event loop and connections work); GET /agent shows both.

use FindBin;
use lib $FindBin::Bin;
use TestGateway;

use Cwd ();

my $http_config = <<'_EOC_';
    lua_shared_dict agent 1m;

    init_by_lua_block {
        assert(require("ngx.process").enable_privileged_agent(100))
    }

    init_worker_by_lua_block {
        local process = require "ngx.process"

        if process.type() ~= "privileged agent" then
            return
        end

        local agent = ngx.shared.agent
        agent:set("pid", ngx.worker.pid())
        agent:set("type", process.type())

        local f = assert(io.open("/proc/self/status"))
        agent:set("uid", f:read("*a"):match("\nUid:%s*(%d+)"))
        f:close()

        assert(ngx.timer.at(0, function (premature)
            if premature then
                return
            end

            local sock = ngx.socket.tcp()
            local ok, err = sock:connect("127.0.0.1",
                                         $TEST_NGINX_SERVER_PORT)
            if not ok then
                agent:set("fetch", "connect: " .. err)
                return
            end

            sock:send("GET /ping HTTP/1.0\r\nHost: localhost\r\n\r\n")
            local line = sock:receive("*l")
            sock:close()

            agent:set("fetch", line)
        end))
    }
_EOC_

my $config = <<'_EOC_';
    location = /ping {
        return 200 "pong\n";
    }

    location = /agent {
        content_by_lua_block {
            local agent = ngx.shared.agent
            ngx.say("pid: ", agent:get("pid"))
            ngx.say("type: ", agent:get("type"))
            ngx.say("uid: ", agent:get("uid"))
            ngx.say("fetch: ", agent:get("fetch"))
            ngx.say("me: ", require("ngx.process").type())
        }
    }

    # what an agent timer stored under <key>, once it has
    location ~ ^/dict/(?<key>\w+)$ {
        content_by_lua_block {
            local got
            for _ = 1, 50 do
                got = ngx.shared.agent:get(ngx.var.key)
                if got then
                    break
                end
                ngx.sleep(0.1)
            end
            ngx.say(got)
        }
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(http_config => $http_config)
        unless exists $block->{http_config};
    $block->set_value(config => $config) unless exists $block->{config};
    $block->set_value(workers => 2) unless exists $block->{workers};
});


# --- helpers for the setup code (package main) ---

my $Title = 'nginx: privileged agent process';

sub slurp_file {
    my $path = shift;
    open my $fh, '<:raw', $path or return undef;
    local $/;
    return scalar <$fh>;
}

# the process title: nginx overwrites argv (under valgrind, see
# t/TestChecked.pm)
sub title_of {
    return TestChecked::process_title(shift);
}

# "real effective saved fs" of Uid: or Gid: in /proc/<pid>/status
sub ids_of {
    my ($pid, $what) = @_;
    my $status = slurp_file("/proc/$pid/status") // '';
    return $status =~ /^$what:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m
           ? "$1 $2 $3 $4" : '?';
}

sub master {
    return TestGateway::master_pid() // die "no nginx master running\n";
}

# the master's children by role: { agents => [...], workers => [...] }
sub children {
    my $master = shift;
    my %kids = (agents => [], workers => [], other => []);
    for my $pid (TestGateway::child_pids($master)) {
        my $t = title_of($pid);
        my $role = $t eq $Title ? 'agents'
                 : $t =~ /^nginx: worker process/ ? 'workers' : 'other';
        push @{ $kids{$role} }, $pid;
    }
    return \%kids;
}

# waits up to $secs for exactly one agent (other than those in @not)
# and two workers that are not shutting down; returns the agent
sub wait_agent {
    my ($master, $secs, @not) = @_;
    my $agent;
    TestGateway::wait_until($secs, sub {
        my $k = children($master);
        my @a = grep { my $p = $_; !grep { $_ == $p } @not }
                @{ $k->{agents} };
        my @w = grep { title_of($_) eq 'nginx: worker process' }
                @{ $k->{workers} };
        $agent = @a == 1 && @{ $k->{agents} } == 1 && @w == 2 ? $a[0]
                                                              : undef;
        return $agent;
    });
    return $agent;
}

# every agent process of this server root, whatever its master (an
# orphan too): the ones holding its error.log, not other nginx instances
# running on the machine at the same time
sub all_agents {
    my $log = TestGateway::server_root() . '/logs/error.log';
    return grep { title_of($_) eq $Title && TestGateway::alive($_)
                  && grep { (readlink($_) // '') eq $log }
                     glob "/proc/$_/fd/*" }
           map { m{^/proc/(\d+)$} } glob '/proc/[0-9]*';
}

# inodes of the listening sockets: TCP state 0A, unix flag __SO_ACCEPTCON
sub listening_inodes {
    my %inodes;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        for (split /\n/, slurp_file($f) // '') {
            my @f = split ' ';
            $inodes{$f[9]} = 1 if @f > 9 && $f[3] eq '0A';
        }
    }
    for (split /\n/, slurp_file('/proc/net/unix') // '') {
        my @f = split ' ';
        $inodes{$f[6]} = 1 if @f > 6 && $f[3] =~ /^0*10000$/;
    }
    return \%inodes;
}

sub socket_inodes_of {
    my $pid = shift;
    my @inodes;
    for my $fd (glob "/proc/$pid/fd/*") {
        my $target = readlink $fd // next;
        push @inodes, $1 if $target =~ /^socket:\[(\d+)\]$/;
    }
    return @inodes;
}

sub listening_of {
    my $pid = shift;
    my $listening = listening_inodes();
    return grep { $listening->{$_} } socket_inodes_of($pid);
}

# GET /agent as a hash, once the agent's timer has fetched /ping
sub agent_report {
    my $want_pid = shift;
    my $report;
    TestGateway::wait_until(5, sub {
        my $res = http_request('GET /agent');
        return 0 if $res->{error} || $res->{status} != 200;
        $report = { map { /^(\w+): (.*)$/ ? ($1 => $2) : () }
                    split /\n/, $res->{body} };
        return $report->{pid} eq $want_pid
               && $report->{fetch} ne 'nil';
    });
    return $report // {};
}

# every property of a running agent; pushes what is wrong onto @$errs
sub check_agent {
    my ($errs, $ctx, $master, $agent) = @_;

    my $root_ids = ids_of($master, 'Uid');
    for my $what ('Uid', 'Gid') {
        my $ids = ids_of($agent, $what);
        my $m = ids_of($master, $what);
        push @$errs, "$ctx: agent $what $ids, master's $m"
            unless $ids eq $m;
    }

    my $nobody = getpwnam('nobody') // -1;
    for my $w (grep { title_of($_) eq 'nginx: worker process' }
               @{ children($master)->{workers} })
    {
        my $ids = ids_of($w, 'Uid');
        if ($> == 0) {
            push @$errs, "$ctx: worker $w Uid $ids, want nobody ($nobody)"
                unless $ids eq join ' ', ($nobody) x 4;
        }
        push @$errs, "$ctx: worker $w holds no listening socket"
            unless listening_of($w);
    }

    my @l = listening_of($agent);
    push @$errs, "$ctx: agent holds listening sockets: @l" if @l;

    my $r = agent_report($agent);
    push @$errs, "$ctx: GET /agent: pid $r->{pid}, want $agent"
        unless ($r->{pid} // '') eq $agent;
    push @$errs, "$ctx: ngx.process.type() in the agent: "
                 . ($r->{type} // 'nil')
        unless ($r->{type} // '') eq 'privileged agent';
    push @$errs, "$ctx: uid seen by the agent: " . ($r->{uid} // 'nil')
        unless ($r->{uid} // '') eq (split ' ', $root_ids)[0];
    push @$errs, "$ctx: the agent's fetch of /ping: "
                 . ($r->{fetch} // 'nil')
        unless ($r->{fetch} // '') =~ m{^HTTP/1\.1 200 };
    push @$errs, "$ctx: ngx.process.type() in a worker: "
                 . ($r->{me} // 'nil')
        unless ($r->{me} // '') eq 'worker';

    push @$errs, "$ctx: agent $agent died" unless TestGateway::alive($agent);
}

run_tests();

__DATA__

=== TEST 1: ngx.process.type() is "privileged agent" in the agent, "worker" in workers
--- setup
my $agent = wait_agent(master(), 5) or die "no agent within 5s\n";
agent_report($agent);
--- request
GET /agent
--- response_body_like
^pid: \d+
type: privileged agent
uid: 0
fetch: HTTP/1\.1 200 OK
me: worker
$



=== TEST 2: one agent beside the workers, master's user, no listening socket
--- setup
my @errs;
my $master = master();
my $agent = wait_agent($master, 5) or die "no agent within 5s\n";
check_agent(\@errs, 'agent', $master, $agent);
die "the master's uid is not 0: tests must run as root\n"
    if $> == 0 && ids_of($master, 'Uid') ne '0 0 0 0';
verdict('agent', \@errs);
--- request
GET /ping
--- response_body
pong



=== TEST 3: kill -9 of the agent brings a new one
--- setup
my @errs;
my $master = master();
for my $round (1 .. 3) {
    my $old = wait_agent($master, 5) or die "round $round: no agent\n";
    kill KILL => $old;
    my $new = wait_agent($master, 5, $old)
        or die "round $round: no new agent within 5s after kill -9 $old\n";
    push @errs, "round $round: old agent $old still alive"
        if TestGateway::alive($old);
    check_agent(\@errs, "round $round", $master, $new);
}
verdict('respawn', \@errs);
--- request
GET /ping
--- response_body
pong
--- allow_alert



=== TEST 4: HUP replaces the agent, the old one exits
--- setup
my @errs;
my $master = master();
for my $round (1 .. 2) {
    my $old = wait_agent($master, 5) or die "round $round: no agent\n";
    my @old_workers = @{ children($master)->{workers} };
    kill HUP => $master;
    TestGateway::wait_until(10, sub {
        !grep { TestGateway::alive($_) } $old, @old_workers
    }) or push @errs, "round $round: old agent or workers alive after 10s";
    my $new = wait_agent($master, 5, $old)
        or die "round $round: no new agent within 5s after HUP\n";
    push @errs, "round $round: master changed" if master() != $master;
    check_agent(\@errs, "round $round", $master, $new);
}
verdict('reload', \@errs);
--- request
GET /ping
--- response_body
pong
--- no_error_log
exited on signal



=== TEST 5: USR1 reopens the logs in the agent too
--- setup
my $master = master();
my $agent = wait_agent($master, 5) or die "no agent within 5s\n";
my $from = TestGateway::log_size();
kill USR1 => $master;
TestGateway::wait_until(5, sub {
    TestGateway::read_log($from) =~ /\b$agent#\d+: reopening logs/
}) or die "agent $agent did not reopen the logs:\n"
          . TestGateway::read_log($from);
die "agent $agent died on USR1\n" unless TestGateway::alive($agent);
--- request
GET /ping
--- response_body
pong



=== TEST 6: a listening unix-domain socket survives the agent's start, death and exit
--- config
    listen unix:$TEST_NGINX_SERVROOT/logs/agent.sock;

    location = /ping {
        return 200 "pong\n";
    }
--- setup
my $sock = TestGateway::server_root() . '/logs/agent.sock';
my $master = master();
my $old = wait_agent($master, 5) or die "no agent within 5s\n";
die "$sock is not there after start\n" unless -S $sock;
kill KILL => $old;
my $new = wait_agent($master, 5, $old) or die "no agent after kill -9\n";
die "$sock is gone after the agent's respawn\n" unless -S $sock;
my @old_workers = @{ children($master)->{workers} };
kill HUP => $master;
TestGateway::wait_until(10, sub {
    !grep { TestGateway::alive($_) } $new, @old_workers
}) or die "old agent or workers alive 10s after HUP\n";
wait_agent($master, 5, $new) or die "no agent after HUP\n";
die "$sock is gone after the old agent exited on reload\n" unless -S $sock;
--- allow_alert
--- request
GET /ping
--- response_body
pong



=== TEST 7: QUIT: the agent runs exit_worker_by_lua and goes with the master
--- http_config
    init_by_lua_block {
        assert(require("ngx.process").enable_privileged_agent())
    }

    exit_worker_by_lua_block {
        if require("ngx.process").type() == "privileged agent" then
            local f = assert(io.open("$TEST_NGINX_HTML_DIR/agent-exit", "w"))
            f:write(ngx.worker.pid(), "\n")
            f:close()
        end
    }
--- setup
my $master = master();
my $agent = wait_agent($master, 5) or die "no agent within 5s\n";
my @kids = TestGateway::child_pids($master);
kill QUIT => $master;
TestGateway::wait_until(10, sub {
    !grep { TestGateway::alive($_) } $master, @kids
}) or die "processes left 10s after QUIT: "
          . join(' ', grep { TestGateway::alive($_) } $master, @kids) . "\n";
my $exit = slurp_file("$html_dir/agent-exit") // '';
chomp $exit;
die "exit_worker_by_lua in the agent wrote '$exit', want $agent\n"
    unless $exit eq $agent;
my @left = all_agents();
die "agent processes left after QUIT: @left\n" if @left;



=== TEST 8: without enable_privileged_agent(), no agent
--- http_config
    init_worker_by_lua_block {
        ngx.log(ngx.INFO, "process type: ", require("ngx.process").type())
    }
--- config
    location = /ping {
        return 200 "pong\n";
    }
--- setup
my $master = master();
TestGateway::wait_until(5, sub { @{ children($master)->{workers} } == 2 })
    or die "no 2 workers\n";
sleep 0.3;
my $k = children($master);
die "agent without enable_privileged_agent(): @{ $k->{agents} }\n"
    if @{ $k->{agents} };
die "unexpected children: @{ $k->{other} }\n" if @{ $k->{other} };
--- request
GET /ping
--- response_body
pong
--- no_error_log
process type: privileged agent



=== TEST 9: binary upgrade (USR2, then QUIT to the old master): the new master has its own agent
--- setup
my @errs;
my $pidfile = TestGateway::server_root() . '/logs/nginx.pid';
my $old_master = master();
my $old_agent = wait_agent($old_master, 5) or die "no agent\n";
kill USR2 => $old_master;
my $new_master;
TestGateway::wait_until(10, sub {
    my $p = slurp_file($pidfile) // '';
    chomp $p;
    $new_master = $p if $p =~ /^\d+$/ && $p != $old_master
                        && -e "$pidfile.oldbin";
    return $new_master;
}) or die "no new master within 10s after USR2\n";
my $new_agent = wait_agent($new_master, 10)
    or die "the new master $new_master has no agent within 10s\n";
push @errs, "the old agent $old_agent is gone while its master runs"
    unless TestGateway::alive($old_agent);
my @old = ($old_master,
           grep { $_ != $new_master } TestGateway::child_pids($old_master));
kill QUIT => $old_master;
TestGateway::wait_until(10, sub { !grep { TestGateway::alive($_) } @old })
    or push @errs, "the old master's processes left 10s after QUIT";
push @errs, "the new agent $new_agent died"
    unless TestGateway::alive($new_agent);
check_agent(\@errs, 'new master', $new_master, $new_agent);
verdict('binary upgrade', \@errs);
--- request
GET /ping
--- response_body
pong




=== TEST 10: enable_privileged_agent(0) is refused: the master says so and starts no agent
--- http_config
    init_by_lua_block {
        assert(require("ngx.process").enable_privileged_agent(0))
    }
--- setup
my $master = master();
TestGateway::wait_until(5, sub { @{ children($master)->{workers} } == 2 })
    or die "no 2 workers\n";
sleep 0.3;
my $k = children($master);
die "an agent with 0 connections: @{ $k->{agents} }\n" if @{ $k->{agents} };
# the master said why, at its start
TestGateway::read_log(0) =~ /\[error\] $master#\d+: 0 worker_connection is not enough, privileged agent process cannot be spawned/
    or die "the master did not log why it started no agent\n";
--- request
GET /ping
--- response_body
pong



=== TEST 11: enable_privileged_agent(8): an agent timer's 4th connection is one too many
--- http_config
    lua_shared_dict agent 1m;

    init_by_lua_block {
        assert(require("ngx.process").enable_privileged_agent(8))
    }

    init_worker_by_lua_block {
        if require("ngx.process").type() ~= "privileged agent" then
            return
        end

        assert(ngx.timer.at(0, function (premature)
            if premature then
                return
            end

            local socks, results = {}, {}
            for i = 1, 4 do
                local sock = ngx.socket.tcp()
                local ok, err = sock:connect("127.0.0.1",
                                             $TEST_NGINX_SERVER_PORT)
                results[i] = ok and "ok" or "failed: " .. tostring(err)
                socks[i] = sock
            end
            for _, sock in ipairs(socks) do
                sock:close()
            end

            ngx.shared.agent:set("connects", table.concat(results, ", "))
        end))
    }
--- setup
my $agent = wait_agent(master(), 5) or die "no agent\n";
TestGateway::wait_until(5, sub {
    TestGateway::read_log(0) =~ /\[alert\] $agent#\d+: \*\d+ 8 worker_connections are not enough/
}) or die "the agent did not log its connection shortage\n";
--- request
GET /dict/connects
--- response_body_like
^ok, ok, ok, failed: 
--- allow_alert



=== TEST 12: thread pools run in the agent too: ngx.run_worker_thread from an agent timer
--- main_config
    thread_pool agentpool threads=1;
--- http_config
    lua_shared_dict agent 1m;
    lua_package_path "$TEST_NGINX_HTML_DIR/?.lua;;";

    init_by_lua_block {
        assert(require("ngx.process").enable_privileged_agent(100))
    }

    init_worker_by_lua_block {
        if require("ngx.process").type() ~= "privileged agent" then
            return
        end

        assert(ngx.timer.at(0, function (premature)
            if premature then
                return
            end
            local ok, sum = ngx.run_worker_thread("agentpool", "agent_task",
                                                  "add", 2, 3)
            ngx.shared.agent:set("thread", tostring(ok) .. " " .. tostring(sum))
        end))
    }
--- user_files
>>> agent_task.lua
return { add = function (a, b) return a + b end }
--- request
GET /dict/thread
--- response_body
true 5



=== TEST 13: the gateway's runtime refuses master_process off: its agent needs a master
--- main_config
    master_process off;
--- http_config
    init_by_lua_block {
        require("gateway.agent").enable()
    }
--- config
    location = /ping {
        return 200 "pong\n";
    }
--- must_die: start
--- error_log
the gateway needs nginx's master process, which starts its privileged agent: "master_process off" is not supported
