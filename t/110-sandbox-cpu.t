# Sandbox attacks on time: loops and recursion of every shape, work
# hidden in C functions, C-stack exhaustion through callbacks.  Each one
# must end with a 503 naming its budget, in the same worker, and the
# next request must work (t/TestSandbox.pm).

use FindBin;
use lib $FindBin::Bin;
use TestGateway;
use TestSandbox;

run_tests();

__DATA__

=== TEST 1: instruction budget: while true
--- attack: instruction
--- user_files
>>> sandbox/a.lua
while true do end

=== TEST 2: instruction budget: repeat until false
--- attack: instruction
--- user_files
>>> sandbox/a.lua
repeat local x = 1 until false

=== TEST 3: instruction budget: numeric for to 1e12
--- attack: instruction
--- user_files
>>> sandbox/a.lua
local n = 0
for i = 1, 1e12 do n = n + i end

=== TEST 4: instruction budget: goto loop
--- attack: instruction
--- user_files
>>> sandbox/a.lua
::top:: goto top

=== TEST 5: instruction budget: tail recursion
--- attack: instruction
--- user_files
>>> sandbox/a.lua
local function f(n) return f(n + 1) end
f(1)

=== TEST 6: instruction budget: mutual recursion through a closure
--- attack: instruction
--- user_files
>>> sandbox/a.lua
local g
local function f() return g() end
g = function() return f() end
f()

=== TEST 7: instruction budget: pairs iterator loop over a big table
--- attack: instruction
--- user_files
>>> sandbox/a.lua
local t = {}
for i = 1, 100 do t[i] = i end
while true do for k, v in pairs(t) do end end

=== TEST 8: instruction budget: pathological pattern, find
--- attack: instruction
--- user_files
>>> sandbox/a.lua
local s = string.rep("a", 5000)
string.find(s, "(.-)(.-)(.-)(.-)b")

=== TEST 9: instruction budget: pathological pattern as a method, gmatch
--- attack: instruction
--- user_files
>>> sandbox/a.lua
local s = ("a"):rep(5000)
for x in s:gmatch(".-.-.-.-b") do end

=== TEST 10: instruction budget: pathological gsub
--- attack: instruction
--- user_files
>>> sandbox/a.lua
local s = ("a"):rep(5000)
s:gsub("(a*)*b", "x")

=== TEST 11: time budget: table.insert at the front, in a loop
--- attack: time
--- config
    location ~ ^/sandbox/(.+)$ {
        route_guard $1;
        route_guard_root html/sandbox;
        content_by_lua_block {
            require("gateway.sandbox").serve{ time = 0.2,
                                              instructions = 1e12 }
        }
    }
    location = /pid { return 200 "$pid"; }
--- user_files
>>> sandbox/a.lua
local t = {}
for i = 1, 100000 do t[i] = i end
while true do table.insert(t, 1, 0); table.remove(t, 1) end

=== TEST 12: instruction budget: table.sort of a big table
--- attack: instruction
--- user_files
>>> sandbox/a.lua
local t = {}
for i = 1, 200000 do t[i] = -i end
while true do table.sort(t) end

=== TEST 13: instruction budget: sort with an evil comparator
--- attack: instruction
--- user_files
>>> sandbox/a.lua
local t = {}
for i = 1, 1000 do t[i] = i end
table.sort(t, function(a, b) while true do end end)

=== TEST 14: error: sort with an inconsistent comparator
--- attack: error
--- user_files
>>> sandbox/a.lua
local t = {}
for i = 1, 1000 do t[i] = i end
table.sort(t, function(a, b) return true end)

=== TEST 15: nesting budget: gsub callback calling gsub
--- attack: nesting
--- user_files
>>> sandbox/a.lua
local function f(s) return (s:gsub(".", f)) end
f("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")

=== TEST 16: nesting budget: comparator calling table.sort
--- attack: nesting
--- user_files
>>> sandbox/a.lua
local cmp
cmp = function(a, b) table.sort({ 2, 1, 3 }, cmp) return a < b end
table.sort({ 3, 2, 1 }, cmp)

=== TEST 17: nesting budget: gsub table replacement is a plain table
--- attack: nesting
--- user_files
>>> sandbox/a.lua
local function f(s) return (string.gsub(s, "%w", f)) end
ngx.say(string.gsub("abc", "%w", { a = "1" }))
f("abcdef")

=== TEST 18: instruction budget: loop in a gsub callback
--- attack: instruction
--- user_files
>>> sandbox/a.lua
("abc"):gsub(".", function() while true do end end)

=== TEST 19: instruction budget: iterator function loop
--- attack: instruction
--- user_files
>>> sandbox/a.lua
local function it() return 1 end
for x in it do end

=== TEST 20: time budget: a short one, per location
--- attack: time
--- config
    location ~ ^/sandbox/(.+)$ {
        route_guard $1;
        route_guard_root html/sandbox;
        content_by_lua_block {
            require("gateway.sandbox").serve{ time = 0.05,
                                              instructions = 1e12 }
        }
    }
    location = /pid { return 200 "$pid"; }
--- user_files
>>> sandbox/a.lua
while true do end

=== TEST 21: error: deep Lua recursion overflows the Lua stack only
--- attack: error
--- config
    location ~ ^/sandbox/(.+)$ {
        route_guard $1;
        route_guard_root html/sandbox;
        content_by_lua_block {
            require("gateway.sandbox").serve{ instructions = 1e8,
                                              time = $TEST_NGINX_SLOWDOWN }
        }
    }
    location = /pid { return 200 "$pid"; }
--- user_files
>>> sandbox/a.lua
local function f(n) return 1 + f(n + 1) end
f(1)
