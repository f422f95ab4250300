
/*
 * Copyright (C) The gateway authors
 *
 * The watchdog: a worker whose event loop has not turned for longer than
 * "gateway_watchdog" is killed by the privileged agent (SIGKILL), and the
 * master starts another in its place.
 *
 * Each worker owns a slot in a shared zone.  A timer writes the time of
 * the loop's turn into it (the heartbeat: a busy worker turns its loop
 * between requests, a stuck one never), and a precontent handler the
 * time and route of each request (the cached clock and a copy of the
 * name: no system call).  The agent looks at the slots every 100 ms:
 * one whose heartbeat is older than the limit is marked killed (one
 * compare-and-swap, so one agent logs and kills it once), logged, and
 * killed.  While the agent shuts down on quit, its timer is not
 * cancelable as long as a worker of its configuration's generation, or
 * of an older one, lives and no newer agent does: a stuck worker cannot
 * hold a graceful shutdown (see the agent's core patch, 0001).  gateway.watchdog, in the agent, counts the kills.
 *
 *   http {
 *       gateway_watchdog  10s;      # the default; "off" disables it
 *   }
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_route_guard.h"


#if !(HAVE_PRIVILEGED_PROCESS_PATCH)
#error "the watchdog needs the privileged agent patch of the nginx core"
#endif


#define NGX_HTTP_WATCHDOG_SLOTS         NGX_MAX_PROCESSES
#define NGX_HTTP_WATCHDOG_ROUTE_LEN     80
#define NGX_HTTP_WATCHDOG_LOCATION_LEN  56

#define NGX_HTTP_WATCHDOG_LIMIT         10000   /* ms, the default */
#define NGX_HTTP_WATCHDOG_MIN_LIMIT     1000
#define NGX_HTTP_WATCHDOG_MAX_BEAT      1000    /* ms between heartbeats */
#define NGX_HTTP_WATCHDOG_SCAN          100     /* ms between the agent's
                                                   looks */

/* a slot's owner word: the worker's pid << 2 | its state */
#define NGX_HTTP_WATCHDOG_CLAIMING      1
#define NGX_HTTP_WATCHDOG_ACTIVE        2
#define NGX_HTTP_WATCHDOG_KILLED        3

#define ngx_http_watchdog_owner(pid, state)                                  \
    ((ngx_atomic_uint_t) (pid) << 2 | (state))
#define ngx_http_watchdog_pid(owner)    ((ngx_pid_t) ((owner) >> 2))
#define ngx_http_watchdog_state(owner)  ((owner) & 3)


/* one worker's; 192 bytes, three cache lines */
typedef struct {
    ngx_atomic_t                        owner;      /* 0: free */
    ngx_msec_t                          limit;      /* its configuration's */
    ngx_msec_t                          beat;       /* the loop's last turn */
    ngx_msec_t                          request;    /* 0: none yet */
    ngx_uint_t                          route_len;
    ngx_uint_t                          location_len;
    ngx_uint_t                          generation; /* its configuration's */
    u_char                              route[NGX_HTTP_WATCHDOG_ROUTE_LEN];
    u_char                              location[
                                            NGX_HTTP_WATCHDOG_LOCATION_LEN];
} ngx_http_watchdog_slot_t;


/* a worker killed, as gateway.watchdog reads it (its ffi.cdef) */
typedef struct {
    double                              at;         /* when killed */
    double                              stuck;      /* seconds */
    double                              request;    /* seconds, or -1 */
    int                                 pid;
    int                                 route_len;
    int                                 location_len;
    u_char                              route[NGX_HTTP_WATCHDOG_ROUTE_LEN];
    u_char                              location[
                                            NGX_HTTP_WATCHDOG_LOCATION_LEN];
} ngx_http_gateway_watchdog_report_t;


typedef struct {
    ngx_atomic_t                        generation; /* configurations */
    ngx_atomic_t                        agent;      /* the newest agent's
                                                       generation << 32
                                                       | pid */
    ngx_atomic_t                        nslots;     /* slots ever used */
    ngx_atomic_t                        killed;
    ngx_atomic_t                        counted;    /* by gateway.watchdog */
    ngx_http_gateway_watchdog_report_t  last;
    ngx_http_watchdog_slot_t            slots[NGX_HTTP_WATCHDOG_SLOTS];
} ngx_http_watchdog_shm_t;


typedef struct {
    ngx_msec_t                          limit;      /* 0: off */
    ngx_uint_t                          generation; /* this configuration's,
                                                       from 1 */
    ngx_shm_zone_t                     *shm_zone;
} ngx_http_watchdog_main_conf_t;


static ngx_int_t ngx_http_watchdog_handler(ngx_http_request_t *r);
static void ngx_http_watchdog_beat(ngx_event_t *ev);
static void ngx_http_watchdog_scan(ngx_event_t *ev);
static void ngx_http_watchdog_kill(ngx_http_watchdog_shm_t *sh,
    ngx_http_watchdog_slot_t *slot, ngx_atomic_uint_t owner,
    ngx_msec_t stuck, ngx_log_t *log);
static ngx_uint_t ngx_http_watchdog_is_sibling(ngx_pid_t pid);
static size_t ngx_http_watchdog_copy_name(u_char *dst, u_char *src,
    size_t len, size_t size);
static ngx_http_watchdog_main_conf_t *ngx_http_watchdog_conf(
    ngx_cycle_t *cycle);
static char *ngx_http_watchdog(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void *ngx_http_watchdog_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_watchdog_init_main_conf(ngx_conf_t *cf, void *conf);
static ngx_int_t ngx_http_watchdog_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_watchdog_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_watchdog_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_watchdog_init_process(ngx_cycle_t *cycle);
static void ngx_http_watchdog_exit_process(ngx_cycle_t *cycle);

int ngx_http_gateway_watchdog_ffi_take(
    ngx_http_gateway_watchdog_report_t *last);


static ngx_command_t  ngx_http_watchdog_commands[] = {

    { ngx_string("gateway_watchdog"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_watchdog,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_gateway_watchdog_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_watchdog_init,                /* postconfiguration */

    ngx_http_watchdog_create_main_conf,    /* create main configuration */
    ngx_http_watchdog_init_main_conf,      /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_gateway_watchdog_module = {
    NGX_MODULE_V1,
    &ngx_http_gateway_watchdog_module_ctx, /* module context */
    ngx_http_watchdog_commands,            /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_watchdog_init_module,         /* init module */
    ngx_http_watchdog_init_process,        /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_watchdog_exit_process,        /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_watchdog_zone_name = ngx_string("gateway_watchdog");

/* this process's: a worker's slot and heartbeat, or the agent's scan */
static ngx_http_watchdog_slot_t   *ngx_http_watchdog_slot;
static ngx_http_core_loc_conf_t   *ngx_http_watchdog_clcf;
static ngx_http_watchdog_shm_t    *ngx_http_watchdog_sh;
static ngx_event_t                 ngx_http_watchdog_event;
static ngx_uint_t                  ngx_http_watchdog_generation;
static ngx_msec_t                  ngx_http_watchdog_interval;
static ngx_msec_t                  ngx_http_watchdog_last_scan;
static ngx_msec_t                  ngx_http_watchdog_grace_until;


/*
 * Every request's start, last in the precontent phase: after the route
 * guard's handler, whose accepted name it copies.  Plain stores into
 * this worker's slot; the agent reads them only once the worker has
 * stopped writing (its heartbeat is stale), and a name torn by a worker
 * that came back at that moment is only garbled, never unsafe (the
 * agent bounds the lengths and prints the bytes it can, "?" for others).
 */

static ngx_int_t
ngx_http_watchdog_handler(ngx_http_request_t *r)
{
    u_char                    *name;
    size_t                     len;
    ngx_http_core_loc_conf_t  *clcf;
    ngx_http_watchdog_slot_t  *slot;

    slot = ngx_http_watchdog_slot;

    if (slot == NULL) {
        return NGX_DECLINED;
    }

    slot->request = ngx_current_msec;

    if (ngx_http_route_guard_ffi_verdict(r, &name, &len)
        == NGX_HTTP_ROUTE_GUARD_OK)
    {
        len = ngx_min(len, NGX_HTTP_WATCHDOG_ROUTE_LEN);
        ngx_memcpy(slot->route, name, len);
        slot->route_len = len;

    } else {
        slot->route_len = 0;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf != ngx_http_watchdog_clcf) {
        ngx_http_watchdog_clcf = clcf;
        len = ngx_min(clcf->name.len, NGX_HTTP_WATCHDOG_LOCATION_LEN);

        /* the server's own, where no location matched, has no name */
        if (len) {
            ngx_memcpy(slot->location, clcf->name.data, len);
        }

        slot->location_len = len;
    }

    return NGX_DECLINED;
}


/* a worker's heartbeat: its loop turned (the timer is cancelable) */

static void
ngx_http_watchdog_beat(ngx_event_t *ev)
{
    ngx_http_watchdog_slot->beat = ngx_current_msec;

    ngx_add_timer(ev, ngx_http_watchdog_interval);
}


/* the agent's look at the slots */

static void
ngx_http_watchdog_scan(ngx_event_t *ev)
{
    ngx_pid_t                  pid;
    ngx_msec_t                 now, stuck, limit;
    ngx_uint_t                 i, n, judge, watching;
    ngx_atomic_uint_t          owner, agent;
    ngx_http_watchdog_shm_t   *sh;
    ngx_http_watchdog_slot_t  *slot;

    sh = ngx_http_watchdog_sh;
    now = ngx_current_msec;

    /*
     * a late look means this process was not scheduled: the machine
     * stalled (a paused VM, swapping), the workers' heartbeats with it;
     * they get a heartbeat's time to beat again
     */

    if (now - ngx_http_watchdog_last_scan
        > NGX_HTTP_WATCHDOG_SCAN + NGX_HTTP_WATCHDOG_MAX_BEAT)
    {
        ngx_http_watchdog_grace_until = now + NGX_HTTP_WATCHDOG_MAX_BEAT;
    }

    ngx_http_watchdog_last_scan = now;
    judge = (ngx_msec_int_t) (now - ngx_http_watchdog_grace_until) >= 0;
    watching = 0;

    n = ngx_min(sh->nslots, NGX_HTTP_WATCHDOG_SLOTS);

    for (i = 0; i < n; i++) {
        slot = &sh->slots[i];
        owner = slot->owner;

        if (owner == 0) {
            continue;
        }

        pid = ngx_http_watchdog_pid(owner);

        /*
         * a worker gone without freeing its slot: it crashed, or was
         * killed and reaped
         */

        if (pid <= 0 || (kill(pid, 0) == -1 && ngx_errno == NGX_ESRCH)) {
            (void) ngx_atomic_cmp_set(&slot->owner, owner, 0);
            continue;
        }

        if (ngx_http_watchdog_state(owner) != NGX_HTTP_WATCHDOG_ACTIVE) {
            continue;
        }

        if (slot->generation <= ngx_http_watchdog_generation) {
            watching = 1;
        }

        limit = ngx_max(slot->limit, NGX_HTTP_WATCHDOG_MIN_LIMIT);
        stuck = now - slot->beat;

        if (judge && (ngx_msec_int_t) stuck > (ngx_msec_int_t) limit) {
            ngx_http_watchdog_kill(sh, slot, owner, stuck, ev->log);
        }
    }

    /*
     * shutting down, it stays while workers of its generation or older
     * live (on quit, all of them), unless a newer agent runs (on reload:
     * it watches every slot)
     */

    if (ngx_exiting) {
        agent = sh->agent;
        pid = (ngx_pid_t) (agent & 0xffffffff);

        if (!watching
            || ((agent >> 32) > ngx_http_watchdog_generation
                && pid > 0 && kill(pid, 0) == 0))
        {
            return;
        }
    }

    ngx_add_timer(ev, NGX_HTTP_WATCHDOG_SCAN);
}


static void
ngx_http_watchdog_kill(ngx_http_watchdog_shm_t *sh,
    ngx_http_watchdog_slot_t *slot, ngx_atomic_uint_t owner,
    ngx_msec_t stuck, ngx_log_t *log)
{
    u_char                              since[sizeof("1970/09/28 12:00:00")];
    ngx_tm_t                            tm;
    ngx_pid_t                           pid;
    ngx_msec_t                          request;
    ngx_http_gateway_watchdog_report_t  r;

    pid = ngx_http_watchdog_pid(owner);

    /*
     * the slots are writable by every worker, whose routes are code: only
     * a worker of our master is ever killed; a slot naming another
     * process is stale (its pid was reused)
     */

    if (!ngx_http_watchdog_is_sibling(pid)) {
        (void) ngx_atomic_cmp_set(&slot->owner, owner, 0);
        return;
    }

    /*
     * one agent kills it once: a new agent and one shutting down may
     * both be looking
     */

    if (!ngx_atomic_cmp_set(&slot->owner, owner,
                            ngx_http_watchdog_owner(pid,
                                                    NGX_HTTP_WATCHDOG_KILLED)))
    {
        return;
    }

    if (kill(pid, SIGKILL) == -1) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "gateway watchdog: kill(%P, SIGKILL) failed", pid);
    }

    ngx_memzero(&r, sizeof(ngx_http_gateway_watchdog_report_t));

    r.pid = pid;
    r.at = (double) ngx_time();
    r.stuck = stuck / 1000.0;
    request = slot->request;
    r.request = request ? (double) (ngx_current_msec - request) / 1000.0
                        : -1;
    r.route_len = (int) ngx_http_watchdog_copy_name(r.route, slot->route,
                                                 slot->route_len,
                                                 NGX_HTTP_WATCHDOG_ROUTE_LEN);
    r.location_len = (int) ngx_http_watchdog_copy_name(r.location,
                                            slot->location,
                                            slot->location_len,
                                            NGX_HTTP_WATCHDOG_LOCATION_LEN);

    ngx_localtime(ngx_time() - stuck / 1000, &tm);
    (void) ngx_sprintf(since, "%4d/%02d/%02d %02d:%02d:%02d%Z",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);

    if (request == 0) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "gateway watchdog: worker process %P has not "
                      "returned to its event loop for %M ms (since %s), "
                      "before any request: killed", pid, stuck, since);

    } else if (r.route_len) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "gateway watchdog: worker process %P has not "
                      "returned to its event loop for %M ms (since %s), "
                      "in route \"%*s\" (location \"%*s\", its last "
                      "request, started %.1f s ago): killed",
                      pid, stuck, since, (size_t) r.route_len, r.route,
                      (size_t) r.location_len, r.location, r.request);

    } else {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "gateway watchdog: worker process %P has not "
                      "returned to its event loop for %M ms (since %s), "
                      "in location \"%*s\" (its last request, started "
                      "%.1f s ago): killed",
                      pid, stuck, since, (size_t) r.location_len,
                      r.location, r.request);
    }

    sh->last = r;
    ngx_memory_barrier();
    (void) ngx_atomic_fetch_add(&sh->killed, 1);
}


/* whether pid is a child of our master (the agent's parent) */

static ngx_uint_t
ngx_http_watchdog_is_sibling(ngx_pid_t pid)
{
    u_char     *p, *last;
    ssize_t     n;
    ngx_fd_t    fd;
    ngx_pid_t   ppid;
    u_char      path[sizeof("/proc/4294967295/stat")];
    u_char      buf[512];

    if (pid == ngx_pid || pid == getppid()) {
        return 0;
    }

    (void) ngx_sprintf(path, "/proc/%P/stat%Z", pid);

    fd = ngx_open_file(path, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        return 0;
    }

    n = ngx_read_fd(fd, buf, sizeof(buf));
    (void) ngx_close_file(fd);

    if (n <= 0) {
        return 0;
    }

    /* "pid (comm) state ppid ...", where comm may hold anything */

    last = buf + n;
    p = last;

    while (p > buf && p[-1] != ')') {
        p--;
    }

    if (p == buf || last - p < 4) {
        return 0;
    }

    p += 3;     /* " S " */
    ppid = 0;

    while (p < last && *p >= '0' && *p <= '9') {
        ppid = ppid * 10 + (*p++ - '0');

        if (ppid > (ngx_pid_t) (NGX_MAX_INT32_VALUE / 10)) {
            return 0;
        }
    }

    return ppid == getppid();
}


/* at most size bytes of a name, "?" for what could not be logged */

static size_t
ngx_http_watchdog_copy_name(u_char *dst, u_char *src, size_t len,
    size_t size)
{
    size_t  i;

    len = ngx_min(len, size);

    for (i = 0; i < len; i++) {
        dst[i] = (src[i] > 0x20 && src[i] < 0x7f && src[i] != '"'
                  && src[i] != '\\') ? src[i] : '?';
    }

    return len;
}


/* the cycle's configuration, NULL without the watchdog */

static ngx_http_watchdog_main_conf_t *
ngx_http_watchdog_conf(ngx_cycle_t *cycle)
{
    ngx_http_watchdog_main_conf_t  *wmcf;

    wmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                           ngx_http_gateway_watchdog_module);

    if (wmcf == NULL || wmcf->shm_zone == NULL) {
        return NULL;
    }

    return wmcf;
}


/*
 * For gateway.watchdog, through the FFI: the workers killed since it
 * last asked (counted once, whichever agent asks), and the last one
 * killed; -1 without the watchdog.
 */

int
ngx_http_gateway_watchdog_ffi_take(ngx_http_gateway_watchdog_report_t *last)
{
    ngx_atomic_uint_t               killed, counted;
    ngx_http_watchdog_shm_t        *sh;
    ngx_http_watchdog_main_conf_t  *wmcf;

    wmcf = ngx_http_watchdog_conf((ngx_cycle_t *) ngx_cycle);

    if (wmcf == NULL) {
        return -1;
    }

    sh = wmcf->shm_zone->data;

    do {
        counted = sh->counted;
        killed = sh->killed;

        if (killed == counted) {
            return 0;
        }

    } while (!ngx_atomic_cmp_set(&sh->counted, counted, killed));

    ngx_memory_barrier();
    *last = sh->last;

    return (int) (killed - counted);
}


static char *
ngx_http_watchdog(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_watchdog_main_conf_t *wmcf = conf;

    ngx_str_t  *value;

    if (wmcf->limit != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        wmcf->limit = 0;
        return NGX_CONF_OK;
    }

    wmcf->limit = ngx_parse_time(&value[1], 0);

    if (wmcf->limit == (ngx_msec_t) NGX_ERROR) {
        return "invalid value";
    }

    /* below it, a worker merely slow to be scheduled would be killed */

    if (wmcf->limit < NGX_HTTP_WATCHDOG_MIN_LIMIT) {
        return "must be at least 1s, or off";
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_watchdog_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_watchdog_main_conf_t  *wmcf;

    wmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_watchdog_main_conf_t));
    if (wmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     wmcf->shm_zone = NULL;
     */

    wmcf->limit = NGX_CONF_UNSET_MSEC;

    return wmcf;
}


static char *
ngx_http_watchdog_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_watchdog_main_conf_t *wmcf = conf;

    ngx_conf_init_msec_value(wmcf->limit, NGX_HTTP_WATCHDOG_LIMIT);

    return NGX_CONF_OK;
}


/* the slots outlive reloads: the zone is reused, its data kept */

static ngx_int_t
ngx_http_watchdog_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t          *shpool;
    ngx_http_watchdog_shm_t  *sh;

    if (data) {
        shm_zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    sh = ngx_slab_calloc(shpool, sizeof(ngx_http_watchdog_shm_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    shpool->data = sh;
    shm_zone->data = sh;

    return NGX_OK;
}


static ngx_int_t
ngx_http_watchdog_init(ngx_conf_t *cf)
{
    ngx_uint_t                      n;
    ngx_http_handler_pt            *h, *handlers;
    ngx_http_core_main_conf_t      *cmcf;
    ngx_http_watchdog_main_conf_t  *wmcf;

    wmcf = ngx_http_conf_get_module_main_conf(cf,
                                           ngx_http_gateway_watchdog_module);

    if (wmcf->limit == 0) {
        return NGX_OK;
    }

    wmcf->shm_zone = ngx_shared_memory_add(cf, &ngx_http_watchdog_zone_name,
                                       sizeof(ngx_http_watchdog_shm_t)
                                       + 16 * ngx_pagesize,
                                       &ngx_http_gateway_watchdog_module);
    if (wmcf->shm_zone == NULL) {
        return NGX_ERROR;
    }

    wmcf->shm_zone->init = ngx_http_watchdog_init_zone;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    /*
     * the phase runs its handlers from the end of the array: the first
     * place is the last to run, after the route guard's
     */

    handlers = cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers.elts;
    n = cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers.nelts;

    ngx_memmove(&handlers[1], &handlers[0],
                (n - 1) * sizeof(ngx_http_handler_pt));
    handlers[0] = ngx_http_watchdog_handler;

    return NGX_OK;
}


/* in the master, once the configuration is taken: its generation */

static ngx_int_t
ngx_http_watchdog_init_module(ngx_cycle_t *cycle)
{
    ngx_http_watchdog_shm_t        *sh;
    ngx_http_watchdog_main_conf_t  *wmcf;

    wmcf = ngx_http_watchdog_conf(cycle);

    if (wmcf == NULL) {
        return NGX_OK;
    }

    sh = wmcf->shm_zone->data;
    wmcf->generation = ++sh->generation;

    return NGX_OK;
}


static ngx_int_t
ngx_http_watchdog_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                      i, n;
    ngx_atomic_uint_t               claiming;
    ngx_http_watchdog_shm_t        *sh;
    ngx_http_watchdog_slot_t       *slot;
    ngx_http_watchdog_main_conf_t  *wmcf;

    wmcf = ngx_http_watchdog_conf(cycle);

    if (wmcf == NULL) {
        return NGX_OK;
    }

    sh = wmcf->shm_zone->data;
    ngx_http_watchdog_sh = sh;
    ngx_http_watchdog_generation = wmcf->generation;
    ngx_time_update();

    ngx_http_watchdog_event.log = cycle->log;
    ngx_http_watchdog_event.data = sh;

    if (ngx_process == NGX_PROCESS_HELPER && ngx_is_privileged_agent) {
        sh->agent = (ngx_atomic_uint_t) wmcf->generation << 32 | ngx_pid;
        ngx_http_watchdog_last_scan = ngx_current_msec;

        /* not cancelable: it decides when a shutting down agent may go */
        ngx_http_watchdog_event.handler = ngx_http_watchdog_scan;
        ngx_add_timer(&ngx_http_watchdog_event, NGX_HTTP_WATCHDOG_SCAN);

        return NGX_OK;
    }

    if (ngx_process != NGX_PROCESS_WORKER) {
        return NGX_OK;
    }

    n = ngx_min(sh->nslots, NGX_HTTP_WATCHDOG_SLOTS);

    /* our pid in a slot is a dead worker's, whose pid we were given */

    for (i = 0; i < n; i++) {
        if (ngx_http_watchdog_pid(sh->slots[i].owner) == ngx_pid) {
            sh->slots[i].owner = 0;
        }
    }

    claiming = ngx_http_watchdog_owner(ngx_pid, NGX_HTTP_WATCHDOG_CLAIMING);

    for (i = 0; i < NGX_HTTP_WATCHDOG_SLOTS; i++) {
        slot = &sh->slots[i];

        if (slot->owner == 0 && ngx_atomic_cmp_set(&slot->owner, 0, claiming))
        {
            break;
        }
    }

    if (i == NGX_HTTP_WATCHDOG_SLOTS) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "gateway watchdog: no free slot, this worker process "
                      "is not watched");
        return NGX_OK;
    }

    slot->limit = wmcf->limit;
    slot->generation = wmcf->generation;
    slot->beat = ngx_current_msec;
    slot->request = 0;
    slot->route_len = 0;
    slot->location_len = 0;

    ngx_memory_barrier();

    slot->owner = ngx_http_watchdog_owner(ngx_pid, NGX_HTTP_WATCHDOG_ACTIVE);

    while (i >= (n = sh->nslots)) {
        (void) ngx_atomic_cmp_set(&sh->nslots, n, i + 1);
    }

    ngx_http_watchdog_slot = slot;

    ngx_http_watchdog_interval = ngx_min(wmcf->limit / 10,
                                         NGX_HTTP_WATCHDOG_MAX_BEAT);

    /* cancelable: it does not keep a worker that shuts down */
    ngx_http_watchdog_event.handler = ngx_http_watchdog_beat;
    ngx_http_watchdog_event.cancelable = 1;
    ngx_add_timer(&ngx_http_watchdog_event, ngx_http_watchdog_interval);

    return NGX_OK;
}


static void
ngx_http_watchdog_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_watchdog_slot_t  *slot;

    slot = ngx_http_watchdog_slot;

    if (slot != NULL) {
        ngx_http_watchdog_slot = NULL;
        (void) ngx_atomic_cmp_set(&slot->owner,
                                  ngx_http_watchdog_owner(ngx_pid,
                                                    NGX_HTTP_WATCHDOG_ACTIVE),
                                  0);
    }
}
