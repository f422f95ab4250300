# The sandbox's API (README.md, "The sandbox"): what a script can use,
# what it cannot see, and that requests do not see each other.

use FindBin;
use lib $FindBin::Bin;
use TestGateway;
use TestSandbox;

run_tests();

__DATA__

=== TEST 1: hello, the whitelist at work
--- user_files
>>> sandbox/api.lua
local t = { 3, 1, 2 }
table.sort(t)
local args = ngx.req.get_uri_args()
local h = ngx.req.get_headers()
ngx.say(table.concat(t, ","), " ", math.max(4, 5), " ", ("abc"):upper(),
        " ", string.format("%03d", 7), " ", args.a, " ", h["x-foo"],
        " ", ngx.var.request_method)
local v = json.decode('{"k":[1,2]}')
ngx.say(v.k[2], " ", json.encode({ 1, 2 }))
ngx.print("a", 1, "\n")
--- request
GET /sandbox/api?a=b
--- more_headers
X-Foo: bar
--- response_body
1,2,3 5 ABC 007 b bar GET
2 [1,2]
a1



=== TEST 2: math.random is the request's own generator
--- user_files
>>> sandbox/rnd.lua
local ok = math.randomseed == nil
for _ = 1, 1000 do
    local a, b, c = math.random(), math.random(6), math.random(-3, 3)
    ok = ok and a >= 0 and a < 1 and b >= 1 and b <= 6 and b % 1 == 0
            and c >= -3 and c <= 3 and c % 1 == 0
end
ngx.say(ok and "ok" or "bad")
--- request
GET /sandbox/rnd
--- response_body
ok
