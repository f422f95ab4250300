# Sandbox attacks on isolation: what a script must not reach (getfenv,
# metatables, string.dump, bytecode, collectgarbage, jit, debug, ffi,
# package, coroutines, newproxy, pcall), and state a request must not
# leave for the next one.

use FindBin;
use lib $FindBin::Bin;
use TestGateway;
use TestSandbox;

run_tests();

__DATA__

=== TEST 1: none of the dangerous globals exist
--- user_files
>>> sandbox/e.lua
local names = { "getfenv", "setfenv", "getmetatable", "setmetatable",
    "rawset", "load", "loadstring", "loadfile", "dofile", "require",
    "module", "package", "debug", "jit", "ffi", "io", "os", "coroutine",
    "collectgarbage", "newproxy", "pcall", "xpcall", "_G", "gcinfo" }
local seen = {}
for _, k in ipairs(names) do
    if _ENV ~= nil or select(2, next({})) ~= nil then seen[#seen+1] = "?" end
end
local env = {}
for k in pairs(string) do if k == "dump" then seen[#seen + 1] = k end end
if ("x").dump ~= nil then seen[#seen + 1] = "method dump" end
for k in pairs(math) do if k == "randomseed" then seen[#seen+1] = k end end
for k in pairs(ngx) do
    if k ~= "say" and k ~= "print" and k ~= "exit" and k ~= "var"
       and k ~= "req" and not k:match("^HTTP_") then
        seen[#seen + 1] = "ngx." .. k
    end
end
ngx.say(#seen == 0 and "clean" or table.concat(seen, " "))
--- request
GET /sandbox/e
--- response_body
clean

=== TEST 2: globals named above are nil
--- user_files
>>> sandbox/e.lua
ngx.say(tostring(getfenv), tostring(setfenv), tostring(getmetatable),
        tostring(setmetatable), tostring(rawset), tostring(load),
        tostring(loadstring), tostring(require), tostring(package),
        tostring(debug), tostring(jit), tostring(coroutine),
        tostring(collectgarbage), tostring(newproxy), tostring(pcall),
        tostring(xpcall), tostring(io), tostring(os), tostring(_G))
--- request
GET /sandbox/e
--- response_body
nilnilnilnilnilnilnilnilnilnilnilnilnilnilnilnilnilnilnil

=== TEST 3: error: calling a missing global (getfenv)
--- attack: error
--- user_files
>>> sandbox/a.lua
getfenv(1).x = 1

=== TEST 4: error: string.dump is not there
--- attack: error
--- user_files
>>> sandbox/a.lua
string.dump(function() end)

=== TEST 5: error: coroutines are not there (no yield across the hook)
--- attack: error
--- user_files
>>> sandbox/a.lua
coroutine.wrap(function() while true do end end)()

=== TEST 6: writing into string, table, math and ngx stays in the request
--- user_files
>>> sandbox/w.lua
local before = tostring(string.upper == nil) .. tostring(math.pi == nil)
  .. tostring(table.concat == nil) .. tostring(ngx.say2 == nil)
string.upper = nil; math.pi = nil; table.concat = nil; ngx.say2 = 1
string.rep = function() return "poisoned" end
x_global = (x_global or 0) + 1
ngx.say(before, " ", x_global, " ", ("ab"):upper(), " ", ("a"):rep(2))
--- request eval
["GET /sandbox/w", "GET /sandbox/w"]
--- response_body eval
["falsefalsefalsetrue 1 AB aa\n", "falsefalsefalsetrue 1 AB aa\n"]

=== TEST 7: trusted code keeps the real string methods after a script ran
--- config
    location ~ ^/sandbox/(.+)$ {
        route_guard $1;
        route_guard_root html/sandbox;
        content_by_lua_block {
            require("gateway.sandbox").serve{ time = $TEST_NGINX_SLOWDOWN }
        }
    }
    location = /trusted {
        content_by_lua_block {
            ngx.say(("x"):rep(3), " ", type(("x").dump),
                    " ", getmetatable("").__index == string)
        }
    }
    location = /pid { return 200 "$pid"; }
--- user_files
>>> sandbox/w.lua
while true do end
--- request eval
["GET /sandbox/w", "GET /trusted"]
--- error_code eval
[503, 200]
--- response_body eval
[qq({"error":"budget_exceeded","message":"the script exceeded a budget","budget":"instruction"}\n),
 "xxx function true\n"]

=== TEST 8: error: ngx.var is read-only
--- attack: error
--- user_files
>>> sandbox/a.lua
ngx.var.foo = 1

=== TEST 9: error: bytecode is refused by the route guard's root, and no loader
--- attack: error
--- user_files
>>> sandbox/a.lua
local f = load or loadstring
f("\27LJ")

=== TEST 10: ngx.exit with a status
--- user_files
>>> sandbox/x.lua
ngx.say("not sent")
ngx.exit(404)
--- request
GET /sandbox/x
--- error_code: 404
--- response_body_like: 404 Not Found

=== TEST 11: ngx.exit(200) after output sends the output
--- user_files
>>> sandbox/x.lua
ngx.say("sent")
ngx.exit(200)
ngx.say("not sent")
--- request
GET /sandbox/x
--- response_body
sent

=== TEST 12: error: an error value with no metatable to play with
--- attack: error
--- user_files
>>> sandbox/a.lua
error({ "table" })

=== TEST 13: names outside the grammar and /lua/ do not reach sandbox scripts
--- user_files
>>> sandbox/only.lua
ngx.say("sandbox")
--- config
    location ~ ^/sandbox/(.+)$ {
        route_guard $1;
        route_guard_root html/sandbox;
        content_by_lua_block {
            require("gateway.sandbox").serve{ time = $TEST_NGINX_SLOWDOWN }
        }
    }
    location ~ ^/lua/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        content_by_lua_block { require("gateway.router").serve() }
    }
--- init
mkdir "routes";
--- request eval
["GET /sandbox/only", "GET /lua/only", "GET /sandbox/only.lua"]
--- error_code eval
[200, 404, 400]
