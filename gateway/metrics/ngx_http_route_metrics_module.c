
/*
 * Copyright (C) The gateway authors
 *
 * The route metrics: each request of a location with "route_metrics
 * <tree>" is counted in its log phase, in C, into a record of a shared
 * zone: one record per route (the tree and the name the route guard
 * accepted) with its requests by status class, a histogram of its
 * latency in microseconds and their sum; one per tree with the guard's
 * refusals by reason.  A request costs a lookup in the worker's own
 * table of the records it has seen and three atomic additions: no lock,
 * no string made, no Lua.  The counts are in shared memory as soon as
 * they are made, so they add up across the workers and outlive a worker
 * killed with -9, and a reload keeps the zone (as long as its size stays
 * the same).  Names are read only at a scrape: gateway.metrics reads
 * the records through the FFI (the ngx_http_route_metrics_ffi_*
 * functions at the end).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_route_guard.h"


/* status classes: 0 for a request without a status, then 1xx to 5xx */
#define NGX_HTTP_ROUTE_METRICS_CLASSES      6
#define NGX_HTTP_ROUTE_METRICS_BOUNDS       17
#define NGX_HTTP_ROUTE_METRICS_BUCKETS      (NGX_HTTP_ROUTE_METRICS_BOUNDS + 1)

/*
 * A route's values: the sum of its latencies in microseconds, its
 * requests by class, then by latency bucket (the last one above every
 * bound), so that a fast request adds within the record's first cache
 * line.  A tree's record (an empty route name) counts refusals at the
 * index of their ngx_http_route_guard_result_e instead.
 */
#define NGX_HTTP_ROUTE_METRICS_SUM          0
#define NGX_HTTP_ROUTE_METRICS_CLASS        1
#define NGX_HTTP_ROUTE_METRICS_BUCKET                                        \
    (NGX_HTTP_ROUTE_METRICS_CLASS + NGX_HTTP_ROUTE_METRICS_CLASSES)
#define NGX_HTTP_ROUTE_METRICS_VALUES                                        \
    (NGX_HTTP_ROUTE_METRICS_BUCKET + NGX_HTTP_ROUTE_METRICS_BUCKETS)

#define NGX_HTTP_ROUTE_METRICS_TREE_LEN     64
#define NGX_HTTP_ROUTE_METRICS_NAME_LEN     1024
#define NGX_HTTP_ROUTE_METRICS_SCRIPT_LEN   PATH_MAX
#define NGX_HTTP_ROUTE_METRICS_KEY_LEN                                       \
    (NGX_HTTP_ROUTE_METRICS_TREE_LEN + 1 + NGX_HTTP_ROUTE_METRICS_NAME_LEN)

/* a worker forgets the records it knows past this many */
#define NGX_HTTP_ROUTE_METRICS_CACHED       4096

/* a deleted record is freed this many seconds later, not before */
#define NGX_HTTP_ROUTE_METRICS_GRACE        2

/*
 * The latency is timed from the rewrite phase with a microsecond clock,
 * or from nginx's start of the request (a millisecond clock) when the
 * header took longer than this to arrive, in microseconds.
 */
#define NGX_HTTP_ROUTE_METRICS_SLOW_HEADER  2000

#define NGX_HTTP_ROUTE_METRICS_ZONE_SIZE    (1024 * 1024)


/*
 * A record in the zone; the values first: the slab allocator aligns a
 * record to its size, a power of two.
 */

typedef struct {
    ngx_atomic_t                    values[NGX_HTTP_ROUTE_METRICS_VALUES];
    ngx_str_node_t                  sn;         /* "<tree> <name>" */
    ngx_queue_t                     queue;
    time_t                          retired;
    u_short                         tree_len;
    u_short                         script_len;
    u_char                          data[1];    /* the key, the script */
} ngx_http_route_metrics_node_t;


#define ngx_http_route_metrics_record(n)                                     \
    ((ngx_http_route_metrics_node_t *)                                       \
         ((u_char *) (n) - offsetof(ngx_http_route_metrics_node_t, sn)))


typedef struct {
    ngx_rbtree_t                    rbtree;
    ngx_rbtree_node_t               sentinel;
    ngx_queue_t                     queue;      /* the records */
    ngx_queue_t                     retired;    /* deleted, oldest first */
    ngx_atomic_t                    epoch;      /* moves at each deletion */
} ngx_http_route_metrics_shctx_t;


typedef struct {
    ngx_http_route_metrics_shctx_t *sh;
    ngx_slab_pool_t                *shpool;
} ngx_http_route_metrics_zone_t;


/* a record a worker has seen, in its own tree: no lock to find it */

typedef struct {
    ngx_str_node_t                  sn;         /* the record's key */
    ngx_queue_t                     queue;
    ngx_http_route_metrics_node_t  *record;
} ngx_http_route_metrics_cached_t;


/* the same by the guard's version of the route */

typedef struct {
    ngx_rbtree_node_t               node;       /* key: the version */
    ngx_queue_t                     queue;
    ngx_http_route_metrics_node_t  *record;
    size_t                          tree_len;
    u_char                          tree[NGX_HTTP_ROUTE_METRICS_TREE_LEN];
} ngx_http_route_metrics_version_t;


/* a record as a scrape copies it out (the FFI's) */

typedef struct {
    uint64_t                        values[NGX_HTTP_ROUTE_METRICS_VALUES];
    uint32_t                        size;       /* with the strings, padded */
    uint16_t                        tree_len;
    uint16_t                        name_len;
    uint16_t                        script_len;
    /* tree, " ", name, script */
} ngx_http_route_metrics_record_t;


typedef struct {
    ngx_shm_zone_t                 *shm_zone;
    ssize_t                         size;
    ngx_flag_t                      enabled;
} ngx_http_route_metrics_main_conf_t;


typedef struct {
    ngx_str_t                       tree;       /* empty: not counted */
} ngx_http_route_metrics_loc_conf_t;


/* kept in a pool cleanup, which outlives an internal redirect */

typedef struct {
    uint64_t                        start;      /* us, wall clock */
} ngx_http_route_metrics_ctx_t;


static ngx_int_t ngx_http_route_metrics_start_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_route_metrics_log_handler(ngx_http_request_t *r);
static void ngx_http_route_metrics_request(ngx_http_request_t *r,
    ngx_http_route_metrics_zone_t *zone, ngx_str_t *tree);
static void ngx_http_route_metrics_count(ngx_http_request_t *r,
    ngx_http_route_metrics_zone_t *zone, ngx_str_t *tree, ngx_str_t *name,
    ngx_str_t *script, ngx_uint_t version, ngx_uint_t status);
static void ngx_http_route_metrics_reject(ngx_http_route_metrics_zone_t *zone,
    ngx_str_t *tree, ngx_uint_t result);
static uint64_t ngx_http_route_metrics_elapsed(ngx_http_request_t *r);
static uint64_t ngx_http_route_metrics_now(void);
static ngx_http_route_metrics_ctx_t *ngx_http_route_metrics_get_ctx(
    ngx_http_request_t *r);
static void ngx_http_route_metrics_cleanup(void *data);

static ngx_http_route_metrics_node_t *ngx_http_route_metrics_lookup_version(
    ngx_http_route_metrics_zone_t *zone, ngx_str_t *tree, ngx_str_t *name,
    ngx_str_t *script, ngx_uint_t version);
static ngx_http_route_metrics_node_t *ngx_http_route_metrics_lookup(
    ngx_http_route_metrics_zone_t *zone, ngx_str_t *tree, ngx_str_t *name,
    ngx_str_t *script);
static void ngx_http_route_metrics_key(ngx_str_t *key, ngx_str_t *tree,
    ngx_str_t *name);
static ngx_http_route_metrics_node_t *ngx_http_route_metrics_insert_locked(
    ngx_http_route_metrics_zone_t *zone, ngx_str_t *key, uint32_t hash,
    size_t tree_len, ngx_str_t *script);
static void ngx_http_route_metrics_sweep_locked(
    ngx_http_route_metrics_zone_t *zone);
static void ngx_http_route_metrics_forget(void);
static ngx_int_t ngx_http_route_metrics_valid_tree(u_char *data, size_t len);
static ngx_http_route_metrics_zone_t *ngx_http_route_metrics_ffi_args(
    u_char *tree, size_t tree_len, u_char *name, size_t name_len,
    ngx_uint_t empty, ngx_str_t *t, ngx_str_t *n, int *rc);

static char *ngx_http_route_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_route_metrics_zone_size(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_route_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void *ngx_http_route_metrics_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_route_metrics_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_route_metrics_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static ngx_int_t ngx_http_route_metrics_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_route_metrics_init_process(ngx_cycle_t *cycle);
static void ngx_http_route_metrics_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_route_metrics_commands[] = {

    { ngx_string("route_metrics"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_route_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("route_metrics_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_route_metrics_zone_size,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_route_metrics_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_route_metrics_init,           /* postconfiguration */

    ngx_http_route_metrics_create_main_conf, /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_route_metrics_create_loc_conf, /* create location configuration */
    ngx_http_route_metrics_merge_loc_conf  /* merge location configuration */
};


ngx_module_t  ngx_http_route_metrics_module = {
    NGX_MODULE_V1,
    &ngx_http_route_metrics_module_ctx,    /* module context */
    ngx_http_route_metrics_commands,       /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_route_metrics_init_process,   /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_route_metrics_exit_process,   /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* the buckets' upper bounds, microseconds: 50 us to 10 s */
static uint64_t  ngx_http_route_metrics_bounds[] = {
    50, 100, 250, 500,
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000
};


/* the worker's records, and the zone's epoch when it last looked */
static ngx_rbtree_t        ngx_http_route_metrics_cache;
static ngx_rbtree_node_t   ngx_http_route_metrics_cache_sentinel;
static ngx_queue_t         ngx_http_route_metrics_cached;
static ngx_rbtree_t        ngx_http_route_metrics_versions;
static ngx_rbtree_node_t   ngx_http_route_metrics_versions_sentinel;
static ngx_queue_t         ngx_http_route_metrics_versioned;
static ngx_uint_t          ngx_http_route_metrics_ncached;
static ngx_atomic_uint_t   ngx_http_route_metrics_epoch;

static ngx_uint_t          ngx_http_route_metrics_full_logged;

/* the zone of the worker's cycle, NULL where there is none */
static ngx_http_route_metrics_zone_t  *ngx_http_route_metrics_worker_zone;


static ngx_int_t
ngx_http_route_metrics_start_handler(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t                 *cln;
    ngx_http_route_metrics_ctx_t       *ctx;
    ngx_http_route_metrics_loc_conf_t  *rmlcf;

    rmlcf = ngx_http_get_module_loc_conf(r, ngx_http_route_metrics_module);

    if (rmlcf->tree.len == 0 || r != r->main) {
        return NGX_DECLINED;
    }

    /* once per request: an internal redirect keeps the first start */

    if (ngx_http_route_metrics_get_ctx(r) != NULL) {
        return NGX_DECLINED;
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_route_metrics_ctx_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_route_metrics_cleanup;

    ctx = cln->data;
    ctx->start = ngx_http_route_metrics_now();

    ngx_http_set_ctx(r, ctx, ngx_http_route_metrics_module);

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_route_metrics_log_handler(ngx_http_request_t *r)
{
    ngx_http_route_metrics_zone_t      *zone;
    ngx_http_route_metrics_loc_conf_t  *rmlcf;

    rmlcf = ngx_http_get_module_loc_conf(r, ngx_http_route_metrics_module);

    if (rmlcf->tree.len == 0) {
        return NGX_OK;
    }

    zone = ngx_http_route_metrics_worker_zone;

    if (zone != NULL) {
        ngx_http_route_metrics_request(r, zone, &rmlcf->tree);
    }

    return NGX_OK;
}


/*
 * A request under its route when the guard accepted one, under the
 * guard's reason otherwise; nothing when the guard did not run.
 */

static void
ngx_http_route_metrics_request(ngx_http_request_t *r,
    ngx_http_route_metrics_zone_t *zone, ngx_str_t *tree)
{
    int           result;
    ngx_str_t     name, script;
    ngx_uint_t    status;
    unsigned int  version;

    result = ngx_http_route_guard_ffi_verdict(r, &name.data, &name.len);

    if (result < 0) {
        return;
    }

    if (result != NGX_HTTP_ROUTE_GUARD_OK) {
        ngx_http_route_metrics_reject(zone, tree, result);
        return;
    }

    if (ngx_http_route_guard_ffi_script(r, &script.data, &script.len,
                                        &version)
        != NGX_OK)
    {
        ngx_str_set(&script, "");
        version = 0;
    }

    /* as ngx.status sees it */

    status = r->err_status ? r->err_status : r->headers_out.status;

    ngx_http_route_metrics_count(r, zone, tree, &name, &script, version,
                                 status);
}


static void
ngx_http_route_metrics_count(ngx_http_request_t *r,
    ngx_http_route_metrics_zone_t *zone, ngx_str_t *tree, ngx_str_t *name,
    ngx_str_t *script, ngx_uint_t version, ngx_uint_t status)
{
    uint64_t                        us;
    ngx_uint_t                      class, b;
    ngx_http_route_metrics_node_t  *record;

    record = ngx_http_route_metrics_lookup_version(zone, tree, name, script,
                                                   version);

    if (record == NULL) {
        return;
    }

    class = status / 100;

    if (class >= NGX_HTTP_ROUTE_METRICS_CLASSES) {
        class = 0;
    }

    us = ngx_http_route_metrics_elapsed(r);

    for (b = 0; b < NGX_HTTP_ROUTE_METRICS_BOUNDS; b++) {
        if (us <= ngx_http_route_metrics_bounds[b]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(
                  &record->values[NGX_HTTP_ROUTE_METRICS_CLASS + class], 1);
    (void) ngx_atomic_fetch_add(
                  &record->values[NGX_HTTP_ROUTE_METRICS_BUCKET + b], 1);
    (void) ngx_atomic_fetch_add(&record->values[NGX_HTTP_ROUTE_METRICS_SUM],
                                (ngx_atomic_int_t) us);
}


static void
ngx_http_route_metrics_reject(ngx_http_route_metrics_zone_t *zone,
    ngx_str_t *tree, ngx_uint_t result)
{
    ngx_str_t                       none = ngx_string("");
    ngx_http_route_metrics_node_t  *record;

    if (result == NGX_HTTP_ROUTE_GUARD_OK
        || result >= NGX_HTTP_ROUTE_METRICS_VALUES)
    {
        return;
    }

    record = ngx_http_route_metrics_lookup(zone, tree, &none, &none);

    if (record != NULL) {
        (void) ngx_atomic_fetch_add(&record->values[result], 1);
    }
}


/*
 * From the rewrite phase to now, in microseconds; nginx's own start of
 * the request (its millisecond clock) is taken instead when it is
 * earlier by more than a slow header explains, or when the request was
 * not timed (a location without route_metrics counting itself through
 * gateway.metrics.log()).
 */

static uint64_t
ngx_http_route_metrics_elapsed(ngx_http_request_t *r)
{
    uint64_t                       now, start;
    ngx_http_route_metrics_ctx_t  *ctx;

    now = ngx_http_route_metrics_now();
    start = (uint64_t) r->start_sec * 1000000 + r->start_msec * 1000;

    ctx = ngx_http_route_metrics_get_ctx(r);

    if (ctx != NULL && ctx->start < start + NGX_HTTP_ROUTE_METRICS_SLOW_HEADER)
    {
        start = ctx->start;
    }

    /* the wall clock may step back */

    return (now > start) ? now - start : 0;
}


static uint64_t
ngx_http_route_metrics_now(void)
{
    struct timeval  tv;

    ngx_gettimeofday(&tv);

    return (uint64_t) tv.tv_sec * 1000000 + tv.tv_usec;
}


/* as ngx_http_realip_module finds its context after a redirect */

static ngx_http_route_metrics_ctx_t *
ngx_http_route_metrics_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t            *cln;
    ngx_http_route_metrics_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_route_metrics_module);

    if (ctx == NULL && (r->internal || r->filter_finalize)) {

        for (cln = r->pool->cleanup; cln; cln = cln->next) {
            if (cln->handler == ngx_http_route_metrics_cleanup) {
                ctx = cln->data;
                ngx_http_set_ctx(r, ctx, ngx_http_route_metrics_module);
                break;
            }
        }
    }

    return ctx;
}


static void
ngx_http_route_metrics_cleanup(void *data)
{
    /* nothing to release: the cleanup only keeps the context */
}


/*
 * The record of a route by the guard's version of it (0: none, with
 * route_guard_cache off), as the worker found it last for this tree: no
 * key made, no hash; by name otherwise.  A version is the worker's own,
 * one per file of a name, so it names the route in a tree; a second
 * location with the same root and another tree finds it by name.
 */

static ngx_http_route_metrics_node_t *
ngx_http_route_metrics_lookup_version(ngx_http_route_metrics_zone_t *zone,
    ngx_str_t *tree, ngx_str_t *name, ngx_str_t *script, ngx_uint_t version)
{
    ngx_uint_t                         known;
    ngx_rbtree_node_t                 *node, *sentinel;
    ngx_http_route_metrics_node_t     *record;
    ngx_http_route_metrics_version_t  *v;

    known = 0;

    if (version != 0 && ngx_http_route_metrics_epoch == zone->sh->epoch) {
        node = ngx_http_route_metrics_versions.root;
        sentinel = ngx_http_route_metrics_versions.sentinel;

        while (node != sentinel) {

            if (version != node->key) {
                node = (version < node->key) ? node->left : node->right;
                continue;
            }

            v = (ngx_http_route_metrics_version_t *) node;

            /* the worker's copy of the tree: the record's is colder */

            if (v->tree_len == tree->len
                && ngx_memcmp(v->tree, tree->data, tree->len) == 0)
            {
                return v->record;
            }

            known = 1;
            break;
        }
    }

    record = ngx_http_route_metrics_lookup(zone, tree, name, script);

    if (record == NULL || version == 0 || known) {
        return record;
    }

    v = ngx_alloc(sizeof(ngx_http_route_metrics_version_t), ngx_cycle->log);

    if (v != NULL) {
        v->node.key = version;
        v->record = record;
        v->tree_len = tree->len;
        ngx_memcpy(v->tree, tree->data, tree->len);

        ngx_rbtree_insert(&ngx_http_route_metrics_versions, &v->node);
        ngx_queue_insert_tail(&ngx_http_route_metrics_versioned, &v->queue);
        ngx_http_route_metrics_ncached++;
    }

    return record;
}


/*
 * The record of "<tree> <name>" (an empty name: the tree's refusals),
 * made when it is new.  The worker's own tree answers without a lock;
 * it points into the zone, and is forgotten whenever a record may have
 * been deleted there (the zone's epoch moved): deleted records are freed
 * only NGX_HTTP_ROUTE_METRICS_GRACE seconds later, which a request
 * between its check of the epoch and its additions never takes.
 */

static ngx_http_route_metrics_node_t *
ngx_http_route_metrics_lookup(ngx_http_route_metrics_zone_t *zone,
    ngx_str_t *tree, ngx_str_t *name, ngx_str_t *script)
{
    uint32_t                          hash;
    ngx_str_t                         key;
    ngx_str_node_t                   *sn;
    ngx_http_route_metrics_node_t    *record;
    ngx_http_route_metrics_cached_t  *c;
    u_char                            buf[NGX_HTTP_ROUTE_METRICS_KEY_LEN];

    if (tree->len > NGX_HTTP_ROUTE_METRICS_TREE_LEN
        || name->len > NGX_HTTP_ROUTE_METRICS_NAME_LEN)
    {
        return NULL;
    }

    key.data = buf;
    ngx_http_route_metrics_key(&key, tree, name);

    hash = ngx_murmur_hash2(key.data, key.len);

    if (ngx_http_route_metrics_epoch == zone->sh->epoch) {
        sn = ngx_str_rbtree_lookup(&ngx_http_route_metrics_cache, &key, hash);

        if (sn != NULL) {
            return ((ngx_http_route_metrics_cached_t *) sn)->record;
        }
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (ngx_http_route_metrics_epoch != zone->sh->epoch
        || ngx_http_route_metrics_ncached >= NGX_HTTP_ROUTE_METRICS_CACHED)
    {
        ngx_http_route_metrics_forget();
        ngx_http_route_metrics_epoch = zone->sh->epoch;
    }

    sn = ngx_str_rbtree_lookup(&zone->sh->rbtree, &key, hash);

    if (sn != NULL) {
        record = ngx_http_route_metrics_record(sn);

    } else {
        record = ngx_http_route_metrics_insert_locked(zone, &key, hash,
                                                      tree->len, script);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (record == NULL) {
        return NULL;
    }

    /* without memory for it, the next request takes the lock again */

    c = ngx_alloc(sizeof(ngx_http_route_metrics_cached_t), ngx_cycle->log);

    if (c != NULL) {
        c->sn.node.key = hash;
        c->sn.str = record->sn.str;
        c->record = record;

        ngx_rbtree_insert(&ngx_http_route_metrics_cache, &c->sn.node);
        ngx_queue_insert_tail(&ngx_http_route_metrics_cached, &c->queue);
        ngx_http_route_metrics_ncached++;
    }

    return record;
}


/* "<tree> <name>" into key->data, which has room for the longest */

static void
ngx_http_route_metrics_key(ngx_str_t *key, ngx_str_t *tree, ngx_str_t *name)
{
    u_char  *p;

    p = ngx_cpymem(key->data, tree->data, tree->len);
    *p++ = ' ';
    p = ngx_cpymem(p, name->data, name->len);

    key->len = p - key->data;
}


static ngx_http_route_metrics_node_t *
ngx_http_route_metrics_insert_locked(ngx_http_route_metrics_zone_t *zone,
    ngx_str_t *key, uint32_t hash, size_t tree_len, ngx_str_t *script)
{
    size_t                          size, script_len;
    ngx_http_route_metrics_node_t  *record;

    ngx_http_route_metrics_sweep_locked(zone);

    script_len = (script->len <= NGX_HTTP_ROUTE_METRICS_SCRIPT_LEN)
                 ? script->len : 0;

    size = offsetof(ngx_http_route_metrics_node_t, data) + key->len
           + script_len;

    record = ngx_slab_calloc_locked(zone->shpool, size);

    if (record == NULL) {
        if (!ngx_http_route_metrics_full_logged) {
            ngx_http_route_metrics_full_logged = 1;
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "route metrics: the zone is full, the requests "
                          "of routes new to it are not counted: make "
                          "\"route_metrics_zone\" bigger");
        }

        return NULL;
    }

    ngx_memcpy(record->data, key->data, key->len);
    ngx_memcpy(record->data + key->len, script->data, script_len);

    record->sn.node.key = hash;
    record->sn.str.len = key->len;
    record->sn.str.data = record->data;
    record->tree_len = (u_short) tree_len;
    record->script_len = (u_short) script_len;

    ngx_rbtree_insert(&zone->sh->rbtree, &record->sn.node);
    ngx_queue_insert_tail(&zone->sh->queue, &record->queue);

    return record;
}


static void
ngx_http_route_metrics_sweep_locked(ngx_http_route_metrics_zone_t *zone)
{
    time_t                          now;
    ngx_queue_t                    *q;
    ngx_http_route_metrics_node_t  *record;

    now = ngx_time();

    while (!ngx_queue_empty(&zone->sh->retired)) {
        q = ngx_queue_head(&zone->sh->retired);
        record = ngx_queue_data(q, ngx_http_route_metrics_node_t, queue);

        if (now - record->retired < NGX_HTTP_ROUTE_METRICS_GRACE) {
            return;
        }

        ngx_queue_remove(q);
        ngx_slab_free_locked(zone->shpool, record);
    }
}


/* empties the worker's trees */

static void
ngx_http_route_metrics_forget(void)
{
    ngx_queue_t                       *q;
    ngx_http_route_metrics_cached_t   *c;
    ngx_http_route_metrics_version_t  *v;

    while (!ngx_queue_empty(&ngx_http_route_metrics_cached)) {
        q = ngx_queue_head(&ngx_http_route_metrics_cached);
        c = ngx_queue_data(q, ngx_http_route_metrics_cached_t, queue);

        ngx_queue_remove(q);
        ngx_free(c);
    }

    while (!ngx_queue_empty(&ngx_http_route_metrics_versioned)) {
        q = ngx_queue_head(&ngx_http_route_metrics_versioned);
        v = ngx_queue_data(q, ngx_http_route_metrics_version_t, queue);

        ngx_queue_remove(q);
        ngx_free(v);
    }

    ngx_rbtree_init(&ngx_http_route_metrics_cache,
                    &ngx_http_route_metrics_cache_sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_rbtree_init(&ngx_http_route_metrics_versions,
                    &ngx_http_route_metrics_versions_sentinel,
                    ngx_rbtree_insert_value);

    ngx_http_route_metrics_ncached = 0;
}


/* a tree is a label value: 1 to 64 of [a-z0-9_] */

static ngx_int_t
ngx_http_route_metrics_valid_tree(u_char *data, size_t len)
{
    size_t  i;

    if (len == 0 || len > NGX_HTTP_ROUTE_METRICS_TREE_LEN) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!((data[i] >= 'a' && data[i] <= 'z')
              || (data[i] >= '0' && data[i] <= '9')
              || data[i] == '_'))
        {
            return 0;
        }
    }

    return 1;
}


static char *
ngx_http_route_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_route_metrics_loc_conf_t *rmlcf = conf;

    ngx_str_t                           *value;
    ngx_http_route_metrics_main_conf_t  *rmmcf;

    if (rmlcf->tree.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        ngx_str_set(&rmlcf->tree, "");
        return NGX_CONF_OK;
    }

    if (!ngx_http_route_metrics_valid_tree(value[1].data, value[1].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid tree \"%V\": 1 to %d lowercase letters, "
                           "digits or \"_\"", &value[1],
                           NGX_HTTP_ROUTE_METRICS_TREE_LEN);
        return NGX_CONF_ERROR;
    }

    rmlcf->tree = value[1];

    rmmcf = ngx_http_conf_get_module_main_conf(cf,
                                               ngx_http_route_metrics_module);
    rmmcf->enabled = 1;

    return NGX_CONF_OK;
}


static char *
ngx_http_route_metrics_zone_size(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_route_metrics_main_conf_t *rmmcf = conf;

    ssize_t     size;
    ngx_str_t  *value;

    if (rmmcf->size != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    size = ngx_parse_size(&value[1]);

    if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\": %uz bytes at least",
                           &value[1], 8 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    rmmcf->size = size;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_route_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_route_metrics_zone_t  *ozone = data;

    ngx_http_route_metrics_zone_t  *zone;

    zone = shm_zone->data;

    /* a reload keeps the counts */

    if (ozone != NULL) {
        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;
        return NGX_OK;
    }

    zone->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        zone->sh = zone->shpool->data;
        return NGX_OK;
    }

    zone->sh = ngx_slab_alloc(zone->shpool,
                              sizeof(ngx_http_route_metrics_shctx_t));
    if (zone->sh == NULL) {
        return NGX_ERROR;
    }

    zone->shpool->data = zone->sh;

    ngx_rbtree_init(&zone->sh->rbtree, &zone->sh->sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&zone->sh->queue);
    ngx_queue_init(&zone->sh->retired);
    zone->sh->epoch = 0;

    /* a full zone is logged once per worker, by us, not per request */

    zone->shpool->log_nomem = 0;

    return NGX_OK;
}


static void *
ngx_http_route_metrics_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_route_metrics_main_conf_t  *rmmcf;

    rmmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_route_metrics_main_conf_t));
    if (rmmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     rmmcf->shm_zone = NULL;
     *     rmmcf->enabled = 0;
     */

    rmmcf->size = NGX_CONF_UNSET;

    return rmmcf;
}


static void *
ngx_http_route_metrics_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_route_metrics_loc_conf_t  *rmlcf;

    rmlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_route_metrics_loc_conf_t));
    if (rmlcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     rmlcf->tree = { 0, NULL };
     */

    return rmlcf;
}


static char *
ngx_http_route_metrics_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_route_metrics_loc_conf_t *prev = parent;
    ngx_http_route_metrics_loc_conf_t *conf = child;

    ngx_conf_merge_str_value(conf->tree, prev->tree, "");

    return NGX_CONF_OK;
}


/*
 * The zone exists when a location counts itself or route_metrics_zone
 * is given (for gateway.metrics.log() and the Lua side's counts); the
 * phase handlers only when a location counts itself.
 */

static ngx_int_t
ngx_http_route_metrics_init(ngx_conf_t *cf)
{
    ngx_str_t                            name = ngx_string("route_metrics");
    ngx_http_handler_pt                 *h;
    ngx_http_core_main_conf_t           *cmcf;
    ngx_http_route_metrics_main_conf_t  *rmmcf;

    rmmcf = ngx_http_conf_get_module_main_conf(cf,
                                               ngx_http_route_metrics_module);

    if (!rmmcf->enabled && rmmcf->size == NGX_CONF_UNSET) {
        return NGX_OK;
    }

    if (rmmcf->size == NGX_CONF_UNSET) {
        rmmcf->size = NGX_HTTP_ROUTE_METRICS_ZONE_SIZE;
    }

    rmmcf->shm_zone = ngx_shared_memory_add(cf, &name, rmmcf->size,
                                            &ngx_http_route_metrics_module);
    if (rmmcf->shm_zone == NULL) {
        return NGX_ERROR;
    }

    rmmcf->shm_zone->init = ngx_http_route_metrics_init_zone;

    rmmcf->shm_zone->data = ngx_pcalloc(cf->pool,
                                        sizeof(ngx_http_route_metrics_zone_t));
    if (rmmcf->shm_zone->data == NULL) {
        return NGX_ERROR;
    }

    if (!rmmcf->enabled) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_route_metrics_start_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_route_metrics_log_handler;

    return NGX_OK;
}


static ngx_int_t
ngx_http_route_metrics_init_process(ngx_cycle_t *cycle)
{
    ngx_http_route_metrics_main_conf_t  *rmmcf;

    rmmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                                ngx_http_route_metrics_module);

    if (rmmcf != NULL && rmmcf->shm_zone != NULL) {
        ngx_http_route_metrics_worker_zone = rmmcf->shm_zone->data;
    }

    ngx_queue_init(&ngx_http_route_metrics_cached);
    ngx_queue_init(&ngx_http_route_metrics_versioned);

    ngx_http_route_metrics_forget();

    return NGX_OK;
}


static void
ngx_http_route_metrics_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_route_metrics_forget();
}


/*
 * For the Lua side (gateway.metrics), through the FFI.  Trees and names
 * are given as (data, len); each returns NGX_OK, NGX_DECLINED without
 * the zone, NGX_ERROR for an argument out of bounds.
 */

/* the buckets' upper bounds in microseconds, and how many */

int
ngx_http_route_metrics_ffi_bounds(const uint64_t **bounds)
{
    *bounds = ngx_http_route_metrics_bounds;

    return NGX_HTTP_ROUTE_METRICS_BOUNDS;
}


/*
 * The zone, with the FFI's tree and name (1 to
 * NGX_HTTP_ROUTE_METRICS_NAME_LEN bytes, or none with "empty") as
 * strings; NULL without the zone (*rc NGX_DECLINED) or for arguments
 * out of bounds (NGX_ERROR).
 */

static ngx_http_route_metrics_zone_t *
ngx_http_route_metrics_ffi_args(u_char *tree, size_t tree_len, u_char *name,
    size_t name_len, ngx_uint_t empty, ngx_str_t *t, ngx_str_t *n, int *rc)
{
    if (!ngx_http_route_metrics_valid_tree(tree, tree_len)
        || (name_len == 0 && !empty)
        || name_len > NGX_HTTP_ROUTE_METRICS_NAME_LEN)
    {
        *rc = NGX_ERROR;
        return NULL;
    }

    t->len = tree_len;
    t->data = tree;
    n->len = name_len;
    n->data = name;

    *rc = NGX_DECLINED;

    return ngx_http_route_metrics_worker_zone;
}


/* r counted as a location with "route_metrics <tree>" counts it */

int
ngx_http_route_metrics_ffi_log(ngx_http_request_t *r, u_char *tree,
    size_t len)
{
    int                             rc;
    ngx_str_t                       t, n;
    ngx_http_route_metrics_zone_t  *zone;

    zone = ngx_http_route_metrics_ffi_args(tree, len, (u_char *) "", 0, 1,
                                           &t, &n, &rc);
    if (zone == NULL) {
        return rc;
    }

    ngx_http_route_metrics_request(r, zone, &t);

    return NGX_OK;
}


/*
 * r, with this status, under the route "name" of "tree": for a request
 * the guard accepted whose log phase is another location's (an
 * error_page); its latency is timed as the log phase would.
 */

int
ngx_http_route_metrics_ffi_count(ngx_http_request_t *r, u_char *tree,
    size_t tree_len, u_char *name, size_t name_len, int status)
{
    int                             rc;
    ngx_str_t                       t, n, none = ngx_string("");
    ngx_http_route_metrics_zone_t  *zone;

    if (status < 0) {
        return NGX_ERROR;
    }

    zone = ngx_http_route_metrics_ffi_args(tree, tree_len, name, name_len, 0,
                                           &t, &n, &rc);
    if (zone == NULL) {
        return rc;
    }

    ngx_http_route_metrics_count(r, zone, &t, &n, &none, 0, status);

    return NGX_OK;
}


/* one refusal of the guard (an ngx_http_route_guard_result_e) in "tree" */

int
ngx_http_route_metrics_ffi_reject(u_char *tree, size_t len, int result)
{
    int                             rc;
    ngx_str_t                       t, n;
    ngx_http_route_metrics_zone_t  *zone;

    if (result <= NGX_HTTP_ROUTE_GUARD_OK
        || result > NGX_HTTP_ROUTE_GUARD_ERROR)
    {
        return NGX_ERROR;
    }

    zone = ngx_http_route_metrics_ffi_args(tree, len, (u_char *) "", 0, 1,
                                           &t, &n, &rc);
    if (zone == NULL) {
        return rc;
    }

    ngx_http_route_metrics_reject(zone, &t, result);

    return NGX_OK;
}


/*
 * The route's record, made now if it is new, with the script's path,
 * which the scrape looks at to drop the routes whose script is gone;
 * NGX_DECLINED too when the zone is full.
 */

int
ngx_http_route_metrics_ffi_register(u_char *tree, size_t tree_len,
    u_char *name, size_t name_len, u_char *script, size_t script_len)
{
    int                             rc;
    ngx_str_t                       t, n, s;
    ngx_http_route_metrics_zone_t  *zone;

    if (script_len > NGX_HTTP_ROUTE_METRICS_SCRIPT_LEN) {
        return NGX_ERROR;
    }

    zone = ngx_http_route_metrics_ffi_args(tree, tree_len, name, name_len, 0,
                                           &t, &n, &rc);
    if (zone == NULL) {
        return rc;
    }

    s.len = script_len;
    s.data = script;

    return (ngx_http_route_metrics_lookup(zone, &t, &n, &s) != NULL)
           ? NGX_OK : NGX_DECLINED;
}


/* drops the route's record (empty name: the tree's refusals) */

int
ngx_http_route_metrics_ffi_delete(u_char *tree, size_t tree_len,
    u_char *name, size_t name_len)
{
    int                             rc;
    ngx_str_t                       t, n, key;
    ngx_str_node_t                 *sn;
    ngx_http_route_metrics_zone_t  *zone;
    ngx_http_route_metrics_node_t  *record;
    u_char                          buf[NGX_HTTP_ROUTE_METRICS_KEY_LEN];

    zone = ngx_http_route_metrics_ffi_args(tree, tree_len, name, name_len, 1,
                                           &t, &n, &rc);
    if (zone == NULL) {
        return rc;
    }

    key.data = buf;
    ngx_http_route_metrics_key(&key, &t, &n);

    ngx_shmtx_lock(&zone->shpool->mutex);

    ngx_http_route_metrics_sweep_locked(zone);

    sn = ngx_str_rbtree_lookup(&zone->sh->rbtree, &key,
                               ngx_murmur_hash2(key.data, key.len));

    if (sn != NULL) {
        record = ngx_http_route_metrics_record(sn);

        ngx_rbtree_delete(&zone->sh->rbtree, &record->sn.node);
        ngx_queue_remove(&record->queue);

        record->retired = ngx_time();
        ngx_queue_insert_tail(&zone->sh->retired, &record->queue);

        /* every worker forgets its pointers before its next count */
        zone->sh->epoch++;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_OK;
}


/*
 * Copies every record into buf, each an ngx_http_route_metrics_record_t
 * followed by its strings and padded to 8 bytes, and returns how many;
 * *used is the size they take.  When that is more than "size", nothing
 * is copied past it and NGX_AGAIN is returned: call again with *used.
 */

int
ngx_http_route_metrics_ffi_snapshot(u_char *buf, size_t size, size_t *used)
{
    int                               n;
    size_t                            len, need;
    ngx_uint_t                        i;
    ngx_queue_t                      *q;
    ngx_http_route_metrics_zone_t    *zone;
    ngx_http_route_metrics_node_t    *record;
    ngx_http_route_metrics_record_t  *out;

    zone = ngx_http_route_metrics_worker_zone;
    if (zone == NULL) {
        return NGX_DECLINED;
    }

    n = 0;
    need = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    ngx_http_route_metrics_sweep_locked(zone);

    for (q = ngx_queue_head(&zone->sh->queue);
         q != ngx_queue_sentinel(&zone->sh->queue);
         q = ngx_queue_next(q))
    {
        record = ngx_queue_data(q, ngx_http_route_metrics_node_t, queue);

        len = ngx_align(sizeof(ngx_http_route_metrics_record_t)
                        + record->sn.str.len + record->script_len, 8);

        if (need + len <= size) {
            out = (ngx_http_route_metrics_record_t *) (buf + need);

            /* aligned 64-bit loads: each value is whole */

            for (i = 0; i < NGX_HTTP_ROUTE_METRICS_VALUES; i++) {
                out->values[i] = record->values[i];
            }

            out->size = (uint32_t) len;
            out->tree_len = record->tree_len;
            out->name_len = (uint16_t) (record->sn.str.len
                                        - record->tree_len - 1);
            out->script_len = record->script_len;

            ngx_memcpy(out + 1, record->data,
                       record->sn.str.len + record->script_len);
        }

        need += len;
        n++;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    *used = need;

    return (need <= size) ? n : NGX_AGAIN;
}
