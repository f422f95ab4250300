# The watchdog's directive (gateway/watchdog/): gateway_watchdog <time> |
# off, in http{} only, once, at least 1 s.  What it does is t/160's.

use FindBin;
use lib $FindBin::Bin;
use TestGateway;

run_tests();

__DATA__

=== TEST 1: off is taken: nginx starts and serves
--- http_config
    gateway_watchdog  off;
--- config
    location = /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- response_body
ok



=== TEST 2: a limit under 1 s is refused: a worker merely slow to be scheduled would be killed
--- http_config
    gateway_watchdog  500ms;
--- config
    location = /t {
        return 200 "ok\n";
    }
--- must_die
--- error_log
[emerg]
"gateway_watchdog" directive must be at least 1s, or off



=== TEST 3: not a time
--- http_config
    gateway_watchdog  soon;
--- config
    location = /t {
        return 200 "ok\n";
    }
--- must_die
--- error_log
"gateway_watchdog" directive invalid value



=== TEST 4: twice
--- http_config
    gateway_watchdog  5s;
    gateway_watchdog  6s;
--- config
    location = /t {
        return 200 "ok\n";
    }
--- must_die
--- error_log
"gateway_watchdog" directive is duplicate



=== TEST 5: http{} only: one limit for every worker
--- config
    location = /t {
        gateway_watchdog  5s;
        return 200 "ok\n";
    }
--- must_die
--- error_log
"gateway_watchdog" directive is not allowed here



=== TEST 6: a limit of whole seconds is taken
--- http_config
    gateway_watchdog  3s;
--- config
    location = /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- response_body
ok
