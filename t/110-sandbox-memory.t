# Sandbox attacks on memory and output: memory bombs through `..`, big
# tables and every wrapped C function that produces a string; output
# floods.  Each one must end with a 503 naming its budget, in the same
# worker, and the next request must work (t/TestSandbox.pm).

use FindBin;
use lib $FindBin::Bin;
use TestGateway;
use TestSandbox;

run_tests();

__DATA__

=== TEST 1: memory budget: s = s .. s
--- attack: memory
--- user_files
>>> sandbox/a.lua
local s = "x"
while true do s = s .. s end

=== TEST 2: memory budget: a huge table
--- attack: memory
--- config
    location ~ ^/sandbox/(.+)$ {
        route_guard $1;
        route_guard_root html/sandbox;
        content_by_lua_block {
            require("gateway.sandbox").serve{ instructions = 1e9,
                                              time = $TEST_NGINX_SLOWDOWN }
        }
    }
    location = /pid { return 200 "$pid"; }
--- user_files
>>> sandbox/a.lua
local t = {}
for i = 1, 1e9 do t[i] = i end

=== TEST 3: memory budget: a table of strings kept alive
--- attack: memory
--- user_files
>>> sandbox/a.lua
local t = {}
local i = 0
while true do i = i + 1; t[i] = "x" .. i end

=== TEST 4: memory budget: string.rep(1e9)
--- attack: memory
--- user_files
>>> sandbox/a.lua
local s = string.rep("x", 1e9)

=== TEST 5: memory budget: ("x"):rep(1e9) through the string metatable
--- attack: memory
--- user_files
>>> sandbox/a.lua
local s = ("x"):rep(1e9)

=== TEST 6: memory budget: rep with a separator
--- attack: memory
--- user_files
>>> sandbox/a.lua
local s = ("x"):rep(1e6, ("y"):rep(100))

=== TEST 7: memory budget: string.format with many big arguments
--- attack: memory
--- user_files
>>> sandbox/a.lua
local s = ("x"):rep(1e6)
local t = {}
for i = 1, 100 do t[i] = s end
local r = string.format(("%s"):rep(100), unpack(t))

=== TEST 8: error: string.format with a huge width
--- attack: error
--- user_files
>>> sandbox/a.lua
local r = string.format("%999999999d", 1)

=== TEST 9: memory budget: table.concat of one big string many times
--- attack: memory
--- user_files
>>> sandbox/a.lua
local s = ("x"):rep(1e6)
local t = {}
for i = 1, 1000 do t[i] = s end
local r = table.concat(t)

=== TEST 10: memory budget: gsub with a long replacement string
--- attack: memory
--- user_files
>>> sandbox/a.lua
local s = ("x"):rep(1e5)
local r = s:gsub("", ("y"):rep(1000))

=== TEST 11: memory budget: gsub with %0 repeated
--- attack: memory
--- user_files
>>> sandbox/a.lua
local s = ("x"):rep(5e5)
local r = s:gsub("^.+", ("%0"):rep(50))

=== TEST 12: memory budget: gsub callback returning a big string
--- attack: memory
--- user_files
>>> sandbox/a.lua
local big = ("x"):rep(1e6)
local r = (("a"):rep(1000)):gsub(".", function() return big end)

=== TEST 13: memory budget: gsub table replacement with a big value
--- attack: memory
--- user_files
>>> sandbox/a.lua
local big = ("x"):rep(1e6)
local r = (("a"):rep(1000)):gsub(".", { a = big })

=== TEST 14: memory budget: json.encode of a table repeating a big string
--- attack: memory
--- user_files
>>> sandbox/a.lua
local big = ("x"):rep(1e6)
local t = {}
for i = 1, 1000 do t[i] = big end
local r = json.encode(t)

=== TEST 15: memory budget: a long concatenation chain in one instruction
--- attack: memory
--- user_files
>>> sandbox/a.lua
local s = ("x"):rep(1e6)
local r = s..s..s..s..s..s..s..s..s..s..s..s..s..s..s..s
local r2 = r..r..r..r..r..r..r..r

=== TEST 16: output budget: a flood of small says
--- attack: output
--- user_files
>>> sandbox/a.lua
local s = ("x"):rep(1000)
while true do ngx.say(s) end

=== TEST 17: output budget: one big print
--- attack: output
--- user_files
>>> sandbox/a.lua
ngx.print(("x"):rep(2 * 1024 * 1024))

=== TEST 18: output budget: a smaller budget per location
--- attack: output
--- config
    location ~ ^/sandbox/(.+)$ {
        route_guard $1;
        route_guard_root html/sandbox;
        content_by_lua_block {
            require("gateway.sandbox").serve{ output = 20 }
        }
    }
    location = /pid { return 200 "$pid"; }
--- user_files
>>> sandbox/a.lua
ngx.say(("x"):rep(20))

=== TEST 19: memory budget: a smaller budget per location
--- attack: memory
--- config
    location ~ ^/sandbox/(.+)$ {
        route_guard $1;
        route_guard_root html/sandbox;
        content_by_lua_block {
            require("gateway.sandbox").serve{ memory = 100000 }
        }
    }
    location = /pid { return 200 "$pid"; }
--- user_files
>>> sandbox/a.lua
local t = {}
for i = 1, 100000 do t[i] = i end

=== TEST 20: garbage is not held against a script
--- user_files
>>> sandbox/g.lua
local n = 0
for i = 1, 5000 do local s = ("x"):rep(4000) .. i; n = n + #s end
ngx.say(n)
--- request
GET /sandbox/g
--- response_body
20018893
