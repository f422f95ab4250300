# gateway.etcd.stream, the decoder of etcd's watch responses: chunked
# framing around newline-delimited JSON, fed in any pieces.  The bodies
# are what Debian's etcd 3.4.23 sends (PUT events carry no "type", int64
# fields are strings); each block cuts one body at every byte offset, or
# into pieces of every size, and checks that the messages come out the
# same, in order, whole.

use FindBin;
use lib $FindBin::Bin;
use TestGateway;

workers(1);

# a body of three messages: created, two events (one message split over
# two chunks), a delete; then the last chunk
my $http_config = <<'_EOC_';
    init_by_lua_block {
        local created = '{"result":{"header":{"cluster_id":"1","member_id":"2","revision":"2","raft_term":"2"},"created":true}}\n'
        local put = '{"result":{"header":{"revision":"3"},"events":[{"kv":{"key":"L2dhdGV3YXkvZi9yb3V0ZXMvYS5sdWE=","create_revision":"3","mod_revision":"3","version":"1","value":"bmd4LnNheSgiYSIp"}},{"kv":{"key":"L2dhdGV3YXkvZi9saWIvbS5sdWE=","mod_revision":"3","value":"cmV0dXJuIHt9"}}]}}\n'
        local del = '{"result":{"header":{"revision":"4"},"events":[{"type":"DELETE","kv":{"key":"L2dhdGV3YXkvZi9yb3V0ZXMvYS5sdWE=","mod_revision":"4"}}]}}\n'

        local function chunk(s)
            return string.format("%x\r\n", #s) .. s .. "\r\n"
        end

        BODY = chunk(created) .. chunk(put:sub(1, 70))
               .. chunk(put:sub(71)) .. chunk(del) .. "0\r\n\r\n"
        PLAIN = created .. put .. del

        -- the messages as one line each, for comparison
        function SUMMARY(msgs)
            local out = {}
            for _, m in ipairs(msgs) do
                local r = m.result
                local evs = {}
                for _, ev in ipairs(r.events or {}) do
                    evs[#evs + 1] = (ev.type or "PUT") .. " "
                                    .. ngx.decode_base64(ev.kv.key)
                end
                out[#out + 1] = r.header.revision .. " "
                                .. (r.created and "created" or "")
                                .. table.concat(evs, ",")
            end
            return table.concat(out, "|")
        end
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(http_config => $http_config)
        unless exists $block->{http_config};
});

run_tests();

__DATA__

=== TEST 1: one piece, then cut in two at every byte offset
--- config
    location = /t {
        content_by_lua_block {
            local stream = require "gateway.etcd.stream"

            local s = stream.new(true)
            local want = SUMMARY(assert(s:feed(BODY)))
            ngx.say(want)
            ngx.say("finished: ", s:finished())

            local bad = 0
            for cut = 0, #BODY do
                s = stream.new(true)
                local msgs = {}
                for _, piece in ipairs({ BODY:sub(1, cut), BODY:sub(cut + 1) }) do
                    for _, m in ipairs(assert(s:feed(piece))) do
                        msgs[#msgs + 1] = m
                    end
                end
                if SUMMARY(msgs) ~= want or not s:finished() then
                    bad = bad + 1
                end
            end
            ngx.say("offsets that differ: ", bad, " of ", #BODY + 1)
        }
    }
--- request
GET /t
--- response_body
2 created|3 PUT /gateway/f/routes/a.lua,PUT /gateway/f/lib/m.lua|4 DELETE /gateway/f/routes/a.lua
finished: true
offsets that differ: 0 of 538



=== TEST 2: pieces of every size from 1 to 64 bytes, chunked and not
--- config
    location = /t {
        content_by_lua_block {
            local stream = require "gateway.etcd.stream"

            for _, case in ipairs({ { true, BODY }, { false, PLAIN } }) do
                local chunked, body = case[1], case[2]
                local want = SUMMARY(assert(stream.new(chunked):feed(body)))
                local bad = 0
                for size = 1, 64 do
                    local s = stream.new(chunked)
                    local msgs = {}
                    for i = 1, #body, size do
                        for _, m in ipairs(assert(s:feed(body:sub(i, i + size - 1)))) do
                            msgs[#msgs + 1] = m
                        end
                    end
                    if SUMMARY(msgs) ~= want then
                        bad = bad + 1
                    end
                end
                ngx.say(chunked and "chunked" or "plain", ": ",
                        select(2, want:gsub("|", "")) + 1, " messages, ",
                        bad, " sizes differ")
            end
        }
    }
--- request
GET /t
--- response_body
chunked: 3 messages, 0 sizes differ
plain: 3 messages, 0 sizes differ



=== TEST 3: bad framing, bad JSON and a message past the limit are errors, not crashes
--- config
    location = /t {
        content_by_lua_block {
            local stream = require "gateway.etcd.stream"
            local function try(chunked, max, ...)
                local s = stream.new(chunked, max)
                for _, piece in ipairs({ ... }) do
                    local msgs, err = s:feed(piece)
                    if not msgs then
                        return err
                    end
                end
                return "ok"
            end
            ngx.say(try(true, nil, "zz\r\n{}\n\r\n"))
            ngx.say(try(true, nil, "3\r\n{}\nXX"))
            ngx.say(try(true, nil, string.rep("1", 100)))
            ngx.say(try(false, nil, "{not json}\n"))
            ngx.say(try(false, nil, "[1,2]\n"))
            ngx.say(try(false, 16, string.rep("x", 10), string.rep("x", 10)))
            ngx.say(try(false, nil, "\n\n{}\n"))
        }
    }
--- request
GET /t
--- response_body_like
^bad chunk header
bad chunk: no CRLF after its data
bad chunk header
bad watch message: .+
ok
watch message too large
ok
$
