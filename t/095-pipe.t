# ngx.pipe, which lua-nginx-module compiles only with a core that makes
# its descriptors close-on-exec (gateway/patches/0003-socket-cloexec.patch),
# and gateway.child on top of it, through which the privileged agent runs
# render-conf and `nginx -t` without blocking its loop.
#
# The child of ngx.pipe must not inherit the process's connections: TEST 2
# lists the descriptors of a child spawned while the client's connection
# and an upstream cosocket are open.  The process's own pipe connections
# are not "open sockets left" when it exits (skip_socket_leak_check): an
# [alert] in any block's log fails it.

use FindBin;
use lib $FindBin::Bin;
use TestGateway;

workers(1);

run_tests();

__DATA__

=== TEST 1: ngx.pipe exists and runs a child: its output and exit status
--- config
    location = /t {
        content_by_lua_block {
            local proc = assert(require("ngx.pipe").spawn({ "echo", "hello" }))
            local out = proc:stdout_read_all()
            local ok, reason, status = proc:wait()
            ngx.say("out: ", out)
            ngx.say("wait: ", tostring(ok), " ", reason, " ", status)
        }
    }
--- request
GET /t
--- response_body
out: hello

wait: true exit 0



=== TEST 2: the child inherits no socket, no epoll and no eventfd of nginx
--- config
    location = /ping {
        return 200 "pong\n";
    }

    location = /t {
        content_by_lua_block {
            -- an upstream connection open while the child starts
            local sock = ngx.socket.tcp()
            assert(sock:connect("127.0.0.1", ngx.var.server_port))

            local proc = assert(require("ngx.pipe").spawn({ "/bin/sh", "-c",
                'for f in /proc/$$/fd/*; do readlink "$f"; done' }))
            local out = assert(proc:stdout_read_all())
            proc:wait()
            sock:close()

            local n, bad = 0, {}
            for target in out:gmatch("[^\n]+") do
                n = n + 1
                if target:find("^socket:") or target:find("^anon_inode:") then
                    bad[#bad + 1] = target
                end
            end
            ngx.say("descriptors: ", n > 0 and "some" or "none")
            ngx.say("inherited: ", #bad == 0 and "none"
                                   or table.concat(bad, " "))
        }
    }
--- request
GET /t
--- response_body
descriptors: some
inherited: none



=== TEST 3: gateway.child: output, a failing status, a missing program
--- config
    location = /t {
        content_by_lua_block {
            local child = require "gateway.child"
            local ok, out = child.run({ "/bin/sh", "-c", "echo out; echo err >&2" }, 5)
            ngx.say(ok, " [", out, "]")
            ok, out = child.run({ "/bin/sh", "-c", "echo no; exit 3" }, 5)
            ngx.say(ok, " [", out, "]")
            ok, out = child.run({ "/nonexistent/program" }, 5)
            ngx.say(ok, " ", out:find("/nonexistent/program", 1, true) ~= nil)
        }
    }
--- request
GET /t
--- response_body_like
^true \[out
err
\]
false \[no

/bin/sh exited with status 3\]
false true
$



=== TEST 4: gateway.child: past its deadline a child is killed and reaped, the loop turns meanwhile
--- config
    location = /t {
        content_by_lua_block {
            local child = require "gateway.child"

            -- a timer of 0.1 s counts the loop's turns while the child runs
            local ticks, done = 0, false
            local function tick(premature)
                if premature or done then
                    return
                end
                ticks = ticks + 1
                ngx.timer.at(0.1, tick)
            end
            ngx.timer.at(0.1, tick)

            ngx.update_time()
            local t0 = ngx.now()
            local ok, out = child.run({ "sleep", "30" }, 1)
            ngx.update_time()
            local took = ngx.now() - t0
            done = true

            ngx.say(ok, " ", out:match("sleep did not finish within 1 s and was killed") ~= nil)
            ngx.say("took about 1 s: ", took >= 0.9 and took < 3)
            ngx.say("the loop turned: ", ticks >= 5)

            -- no child of this worker is left, running or as a zombie
            local f = io.open("/proc/self/task/" .. ngx.worker.pid() .. "/children")
            local kids = f and f:read("*a") or ""
            if f then f:close() end
            ngx.say("children left: [", kids:gsub("%s+$", ""), "]")
        }
    }
--- request
GET /t
--- timeout: 10
--- response_body
false true
took about 1 s: true
the loop turned: true
children left: []



=== TEST 5: gateway.child: output past OUTPUT_MAX is read and dropped, the child finishes
--- config
    location = /t {
        content_by_lua_block {
            local child = require "gateway.child"
            local ok, out = child.run({ "/bin/sh", "-c",
                "head -c 1000000 /dev/zero | tr '\\\\0' x" }, 10)
            ngx.say(ok, " ", #out == child.OUTPUT_MAX)
        }
    }
--- request
GET /t
--- response_body
true true



=== TEST 6: a worker with a pipe open exits on HUP without "open socket left"
--- config
    location = /t {
        content_by_lua_block {
            PROC = assert(require("ngx.pipe").spawn({ "sleep", "5" }))
            ngx.say("spawned")
        }
    }
--- request
GET /t
--- setup
# the worker that spawned the child shuts down gracefully, the pipe open
my $master = TestGateway::master_pid() // die "no master\n";
my @old = TestGateway::child_pids($master);
my $res = http_request('GET /t');
die "GET /t: " . ($res->{status} // $res->{error}) . "\n"
    unless ($res->{status} // 0) == 200;
kill HUP => $master;
TestGateway::wait_until(10, sub { !grep { TestGateway::alive($_) } @old })
    or die "the old worker did not exit within 10 s of HUP\n";
--- response_body
spawned
--- no_error_log
open socket
