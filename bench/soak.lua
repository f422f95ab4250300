-- The request mix of bench/soak, as a wrk script:
--
--   wrk -t<#classes> -c<n> -s bench/soak.lua http://127.0.0.1:<port>
--
-- Each wrk thread sends one class of requests, cycling through its paths,
-- so that it knows the class of every response it gets; it counts them by
-- status.  done() prints, for bench/soak to read, one line per class
--
--   soak class <name> expect <status> got <status>=<count> ...
--
-- and the totals wrk keeps itself (requests, socket errors).  Statuses
-- are checked, not error bodies: only the edited route's body, ours, is
-- looked at ("bad-body" is counted in its place when it is not
-- "edit <n>").  The routes are the ones bench/soak writes.

local classes = {
    -- scripts that exist
    { name = "valid", expect = 200,
      paths = { "/lua/hello", "/lua/v1/time", "/lua?route=v1/time" } },

    -- well-formed names of no script
    { name = "missing", expect = 404,
      paths = { "/lua/missing", "/lua/v1/missing", "/lua?route=nope",
                "/sandbox/missing" } },

    -- names outside the guard's grammar, and dots nginx's own URI parser
    -- refuses (above the root)
    { name = "invalid", expect = 400,
      paths = { "/lua/a//b", "/lua/./hello", "/lua/hello.lua",
                "/lua/hello%00", "/lua/-x", "/lua?route=v1%2ftime",
                "/lua/" .. ("a"):rep(300), "/lua/" .. ("b"):rep(65),
                "/lua/..%2f..%2fetc%2fpasswd",
                "/lua/%2e%2e/%2e%2e/etc/passwd" } },

    -- dots nginx resolves before choosing a location: they leave /lua/
    -- and /sandbox/ and land in "location /"
    { name = "traversal", expect = 404,
      paths = { "/lua/../hello", "/lua/%2e%2e/hello",
                "/sandbox/../hello", "/sandbox/..%2fhello" } },

    { name = "sandbox", expect = 200, paths = { "/sandbox/hello" } },

    -- a sandboxed script over its memory budget
    { name = "sandbox-budget", expect = 503, paths = { "/sandbox/greedy" } },

    -- replaced by bench/soak all the time: the old body or the new one
    { name = "edited", expect = 200, body = "^edit (%d+)\n$",
      paths = { "/lua/edited" } },
}

local threads = {}

-- main state: one class per thread, in order
function setup(thread)
    threads[#threads + 1] = thread
    thread:set("class_index", (#threads - 1) % #classes + 1)
end

-- thread states

local class, paths, next_path
counts = {}
versions = {}

function init()
    class = classes[class_index]
    paths = {}
    for i, p in ipairs(class.paths) do
        paths[i] = wrk.format("GET", p)
    end
    next_path = 0
end

function request()
    next_path = next_path % #paths + 1
    return paths[next_path]
end

function response(status, headers, body)
    local key = status
    if class.body and status == 200 then
        local v = body:match(class.body)
        if v then
            versions[tonumber(v)] = true
        else
            key = "bad-body"
        end
    end
    counts[key] = (counts[key] or 0) + 1
end

-- main state again: the threads' counters, gathered by class

function done(summary)
    local got, seen = {}, {}
    for _, t in ipairs(threads) do
        local c = classes[t:get("class_index")]
        got[c.name] = got[c.name] or {}
        for k, n in pairs(t:get("counts")) do
            got[c.name][k] = (got[c.name][k] or 0) + n
        end
        for v in pairs(t:get("versions")) do
            seen[v] = true
        end
    end

    for _, c in ipairs(classes) do
        local line = { "soak class", c.name, "expect", c.expect, "got" }
        for k, n in pairs(got[c.name] or {}) do
            line[#line + 1] = k .. "=" .. n
        end
        io.write(table.concat(line, " "), "\n")
    end

    local n, max = 0, 0
    for v in pairs(seen) do
        n = n + 1
        if v > max then
            max = v
        end
    end
    io.write("soak versions ", n, " max ", max, "\n")

    local e = summary.errors
    io.write("soak requests ", summary.requests,
             " seconds ", summary.duration / 1e6,
             " errors connect=", e.connect, " read=", e.read,
             " write=", e.write, " timeout=", e.timeout, "\n")
end
