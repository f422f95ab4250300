# Names outside the grammar are refused with the invalid status before any
# file-system access, whatever the channel and the encoding.
#
# The fixtures include scripts that an invalid name would reach if it were
# mapped to a path anyway (routes/a.b.lua, routes/.hidden.lua, ...) and a
# secret.lua outside the root: no response may ever say "SECRET".

use FindBin;
use lib $FindBin::Bin;
use TestGateway;

# $1 of a regex location sees nginx's normalized $uri; /lua?route= sees the
# raw argument; any other URI falls to "location /", whose guard gets the
# raw $request_uri after "/raw/" (or "" when the URI does not start so,
# e.g. when nginx normalized "/lua/../x" away from /lua/).
my $config = <<'_EOC_';
    location ~ ^/lua/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        add_header X-Route-Result $route_guard_result always;
        content_by_lua_file $route_script;
    }

    location = /lua {
        route_guard $arg_route;
        route_guard_root html/routes;
        add_header X-Route-Result $route_guard_result always;
        content_by_lua_file $route_script;
    }

    location / {
        route_guard $raw_route;
        route_guard_root html/routes;
        add_header X-Route-Result $route_guard_result always;
        content_by_lua_file $route_script;
    }
_EOC_

my $http_config = <<'_EOC_';
    map $request_uri $raw_route {
        ~^/raw/(?<r>[^?]*)  $r;
        default             "";
    }
_EOC_

my $files = <<'_EOF_';
>>> routes/hello.lua
ngx.say("hello")
>>> routes/v1/time.lua
ngx.say("v1/time")
>>> secret.lua
ngx.say("SECRET outside the root")
>>> routes/a.b.lua
ngx.say("SECRET a.b")
>>> routes/.hidden.lua
ngx.say("SECRET .hidden")
>>> routes/hello.lua.lua
ngx.say("SECRET double extension")
>>> routes/-dash.lua
ngx.say("SECRET leading dash")
_EOF_

# names no file name in a user_files section can spell
my $init = <<'_EOI_';
write_file("routes/caf\xc3\xa9.lua", "ngx.say('SECRET non-ascii')\n");
write_file("routes/hello\x7f.lua", "ngx.say('SECRET del')\n");
write_file("routes/hel lo.lua", "ngx.say('SECRET space')\n");
_EOI_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(config => $config) unless exists $block->{config};
    $block->set_value(http_config => $http_config)
        unless exists $block->{http_config};
    $block->set_value(user_files => $files) unless exists $block->{user_files};
    $block->set_value(init => $init) unless exists $block->{init};
    $block->set_value(response_body_unlike => "SECRET")
        unless exists $block->{response_body_unlike};
});

run_tests();

__DATA__

=== TEST 1: dots: ".hidden", "a.b", "hello.lua", double extension
--- request eval
["GET /lua/.hidden", "GET /lua/a.b", "GET /lua/hello.lua",
 "GET /lua/hello.lua.lua", "GET /lua?route=..", "GET /lua?route=.",
 "GET /lua?route=../secret", "GET /lua?route=v1/../hello"]
--- error_code eval
[(400) x 8]
--- response_headers
X-Route-Result: grammar
--- error_log
route guard: invalid route name (bad byte)
--- no_error_log
no script for route



=== TEST 2: dot segments on the raw channel, which nginx would have resolved
--- request eval
["GET /raw/../secret", "GET /raw/./hello", "GET /raw/v1/../hello",
 "GET /raw/v1/./time", "GET /raw/hello/.."]
--- error_code eval
[(400) x 5]
--- response_headers
X-Route-Result: grammar
--- error_log
invalid route name (bad byte)



=== TEST 3: dot segments on the $1 channel are resolved by nginx first, never served from outside
--- request eval
["GET /lua/../secret", "GET /lua/%2e%2e/secret", "GET /lua/..%2fsecret",
 "GET /lua/%2e%2e%2fsecret", "GET /lua/v1/../../secret"]
--- error_code eval
[(400) x 5]



=== TEST 4: percent-encodings are not decoded on the raw channel
--- request eval
["GET /raw/%2e%2e/secret", "GET /raw/v1%2ftime", "GET /raw/hello%2elua",
 "GET /raw/%c0%ae%c0%ae/secret", "GET /raw/%252e%252e/secret",
 "GET /raw/hello%20", "GET /raw/hello%0a", "GET /raw/%68ello"]
--- error_code eval
[(400) x 8]
--- response_headers
X-Route-Result: grammar
--- error_log
invalid route name (bad byte)



=== TEST 5: percent-encodings are not decoded in a query argument
--- request eval
["GET /lua?route=%2e%2e%2fsecret", "GET /lua?route=v1%2ftime",
 "GET /lua?route=%68ello", "GET /lua?route=hello+", "GET /lua?route=a%00b"]
--- error_code eval
[(400) x 5]
--- response_headers
X-Route-Result: grammar
--- error_log
invalid route name (bad byte)



=== TEST 6: what nginx decodes into $1 is still checked byte for byte
--- request eval
["GET /lua/a%2eb", "GET /lua/hello%2elua", "GET /lua/%2ehidden",
 "GET /lua/..%5csecret", "GET /lua/%c0%ae%c0%ae/secret",
 "GET /lua/%252e%252e/secret", "GET /lua/hello%20", "GET /lua/hello%0d",
 "GET /lua/caf%c3%a9"]
--- error_code eval
[(400) x 9]
--- response_headers
X-Route-Result: grammar
--- error_log
invalid route name (bad byte)



=== TEST 7: a decoded %2f makes a valid nested name, served only from inside the root
--- request eval
["GET /lua/v1%2ftime", "GET /lua/a%2fb"]
--- error_code eval
[200, 404]
--- response_body_like eval
[qr/^v1\/time$/, qr/404 Not Found/]
--- response_headers eval
["X-Route-Result: ok", "X-Route-Result: missing"]



=== TEST 8: slashes: leading, trailing, doubled
--- request eval
["GET /lua/hello/", "GET /lua/v1/time/", "GET /lua?route=/hello",
 "GET /lua?route=hello/", "GET /lua?route=v1//time", "GET /lua?route=/",
 "GET /raw//hello", "GET /raw/v1//time", "GET /raw/hello/"]
--- error_code eval
[(400) x 9]
--- response_headers
X-Route-Result: grammar
--- error_log
invalid route name (empty segment)
--- no_error_log
invalid route name (bad byte)



=== TEST 9: raw bytes that nginx itself rejects: NUL, CR, %00
--- raw_request eval
["GET /raw/hello\x00 HTTP/1.0\r\n\r\n",
 "GET /lua/hel\x00lo HTTP/1.0\r\n\r\n",
 "GET /raw/hel\rlo HTTP/1.0\r\n\r\n",
 "GET /lua/hello%00 HTTP/1.0\r\n\r\n",
 "GET /raw/hello%00 HTTP/1.0\r\n\r\n"]
--- error_code eval
[(400) x 5]



=== TEST 10: control bytes, tab, space, DEL and backslash in the raw request line
--- raw_request eval
["GET /raw/hel\x01lo HTTP/1.0\r\n\r\n",
 "GET /raw/hel\x1flo HTTP/1.0\r\n\r\n",
 "GET /raw/hel\tlo HTTP/1.0\r\n\r\n",
 "GET /raw/hel lo HTTP/1.0\r\n\r\n",
 "GET /raw/hel\x7flo HTTP/1.0\r\n\r\n",
 "GET /raw/..\\secret HTTP/1.0\r\n\r\n",
 "GET /lua/..\\secret HTTP/1.0\r\n\r\n",
 "GET /lua/hel\x7flo HTTP/1.0\r\n\r\n"]
--- error_code eval
[(400) x 8]



=== TEST 11: bytes 0x80-0xff (UTF-8, overlong UTF-8, stray bytes) in the raw request line
--- raw_request eval
["GET /raw/caf\xc3\xa9 HTTP/1.0\r\n\r\n",
 "GET /lua/caf\xc3\xa9 HTTP/1.0\r\n\r\n",
 "GET /raw/\xc0\xae\xc0\xae/secret HTTP/1.0\r\n\r\n",
 "GET /lua/hello\xff HTTP/1.0\r\n\r\n",
 "GET /lua/\x80 HTTP/1.0\r\n\r\n"]
--- error_code eval
[(400) x 5]
--- response_headers
X-Route-Result: grammar
--- error_log
invalid route name (bad byte)



=== TEST 12: other punctuation is outside the grammar
--- request eval
[map { "GET /lua?route=hel${_}lo" } split //, q{!$'()*+,:;=@~`|^{}[]}]
--- error_code eval
[(400) x 20]
--- response_headers
X-Route-Result: grammar



=== TEST 13: leading dash in any segment
--- request eval
["GET /lua/-dash", "GET /lua/v1/-time", "GET /lua?route=-", "GET /raw/-dash"]
--- error_code eval
[(400) x 4]
--- response_headers
X-Route-Result: grammar
--- error_log
invalid route name (leading dash)



=== TEST 14: empty name
--- request eval
["GET /lua?route=", "GET /lua", "GET /lua?other=hello", "GET /raw/"]
--- error_code eval
[(400) x 4]
--- response_headers
X-Route-Result: grammar
--- error_log
invalid route name (empty)



=== TEST 15: 256 bytes is too long
--- request eval
# 4 * 63 + 3 = 255, plus one
"GET /lua/" . ("a" x 63) . "/" . ("b" x 63) . "/" . ("c" x 63) . "/"
. ("d" x 64)
--- error_code: 400
--- response_headers
X-Route-Result: grammar
--- error_log
invalid route name (too long)



=== TEST 16: length is checked before the bytes
--- request eval
"GET /lua/" . ("." x 300)
--- error_code: 400
--- error_log
invalid route name (too long)



=== TEST 17: 9 segments are too many
--- user_files
>>> routes/a/b/c/d/e/f/g/h/i.lua
ngx.say("SECRET too deep")
--- request
GET /lua/a/b/c/d/e/f/g/h/i
--- error_code: 400
--- response_headers
X-Route-Result: grammar
--- error_log
invalid route name (too many segments)



=== TEST 18: a 65-byte segment is too long
--- user_files eval
">>> routes/" . ("s" x 65) . ".lua\nngx.say('SECRET long segment')\n"
--- request eval
["GET /lua/" . ("s" x 65), "GET /lua/v1/" . ("s" x 65)]
--- error_code eval
[400, 400]
--- response_headers
X-Route-Result: grammar
--- error_log
invalid route name (segment too long)



=== TEST 19: custom limits
--- config
    location ~ ^/len/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        route_guard_max_length 10;
        add_header X-Route-Result $route_guard_result always;
        content_by_lua_file $route_script;
    }
    location ~ ^/seg/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        route_guard_max_segments 2;
        add_header X-Route-Result $route_guard_result always;
        content_by_lua_file $route_script;
    }
    location ~ ^/seglen/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        route_guard_max_segment_length 3;
        add_header X-Route-Result $route_guard_result always;
        content_by_lua_file $route_script;
    }
--- request eval
["GET /len/abcdefghij", "GET /len/abcdefghijk",
 "GET /seg/a/b", "GET /seg/a/b/c",
 "GET /seglen/abc", "GET /seglen/abcd", "GET /seglen/v1/abcd"]
--- error_code eval
[404, 400, 404, 400, 404, 400, 400]
--- response_headers eval
["X-Route-Result: missing", "X-Route-Result: grammar",
 "X-Route-Result: missing", "X-Route-Result: grammar",
 "X-Route-Result: missing", "X-Route-Result: grammar",
 "X-Route-Result: grammar"]
--- error_log
invalid route name (too long)
invalid route name (too many segments)
invalid route name (segment too long)



=== TEST 20: custom invalid status
--- config
    location ~ ^/lua/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        route_guard_invalid_status 403;
        content_by_lua_file $route_script;
    }
--- request eval
["GET /lua/a.b", "GET /lua/hello"]
--- error_code eval
[403, 200]
--- response_body_like eval
[qr/403 Forbidden/, qr/^hello$/]



=== TEST 21: the error page is nginx's generic one and tells nothing of the file system
--- request eval
["GET /lua/a.b", "GET /lua?route=../secret", "GET /raw/%2e%2e/secret"]
--- error_code eval
[400, 400, 400]
--- response_body_like
<title>400 Bad Request</title>
--- response_body_unlike
servroot|routes|\.lua|secret|a\.b|route guard|grammar



=== TEST 22: invalid names are logged at info, not at error or warn
--- request eval
["GET /lua/a.b", "GET /lua/-dash", "GET /lua?route="]
--- error_code eval
[400, 400, 400]
--- error_log eval
[qr/\[info\] .*route guard: invalid route name \(bad byte\).*, client: 127\.0\.0\.1, server: localhost, request: "GET \/lua\/a\.b HTTP\/1\.1"/,
 qr/\[info\] .*route guard: invalid route name \(leading dash\)/,
 qr/\[info\] .*route guard: invalid route name \(empty\)/]
--- no_error_log
[error]
[warn]



=== TEST 23: at the default "error" level invalid names add nothing to the log
--- log_level: error
--- request eval
["GET /lua/a.b", "GET /lua/-dash", "GET /lua?route=", "GET /raw/../secret",
 "GET /lua/hello/", "GET /lua/a/b/c/d/e/f/g/h/i"]
--- error_code eval
[(400) x 6]
--- no_error_log eval
[qr/route guard/, qr/\S/]



=== TEST 24: decoded control bytes cannot forge error log lines
--- config
    location ~ (?s)^/any/(.+)$ {
        route_guard $1;
        route_guard_root html/routes;
        content_by_lua_file $route_script;
    }
--- request
GET /any/x%0a2030/01/01%2000:00:00%20[alert]%201%231:%20forged%0d%0a
--- error_code: 400
--- error_log
invalid route name (bad byte)
--- no_error_log eval
[qr/^2030\/01\/01/m, qr/\r/]



=== TEST 25: the guard runs after the access phase
--- config
    location ~ ^/denied/(.+)$ {
        deny all;
        route_guard $1;
        route_guard_root html/routes;
        content_by_lua_file $route_script;
    }
--- request eval
["GET /denied/a.b", "GET /denied/hello"]
--- error_code eval
[403, 403]
--- no_error_log
route guard
