
/*
 * Copyright (C) The gateway authors
 *
 * The route guard's verdict cache: per worker, per routes root, what the
 * guard found for each name, kept until inotify(7) says that something
 * it depends on changed.  A request for a known, unchanged route makes no
 * system call at all.
 *
 * Why the cache is never stale for a request that follows a change: the
 * kernel queues the inotify event while the change is made (the write,
 * rename, unlink or chmod itself), before the client that made it can
 * send the next request.  epoll reports ready descriptors in the order in
 * which they became ready, and nginx runs their handlers in that order,
 * so the worker reads the event, and drops the verdict, before it reads
 * that request.
 *
 * Only what the watches can see is cached: the name must resolve without
 * any symlink, the file must have a single hard link, and every directory
 * along the name must be watched before the file system is checked.
 * Anything else is checked again on every request.  Missing names are not
 * cached at all, so clients cannot fill the cache: it holds at most one
 * entry per file in the tree.
 *
 * The watches and the inotify connection are ngx_http_route_guard_watch.c's,
 * which hands the events of a root's watches to
 * ngx_http_route_guard_cache_event().
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sys/inotify.h>

#include "ngx_http_route_guard.h"
#include "route_name.h"


struct ngx_http_route_guard_cache_s {
    ngx_http_route_guard_root_t    *root;
    ngx_rbtree_t                    entries;
    ngx_rbtree_node_t               sentinel;
    int                             wd;         /* the root's own watch */
};


typedef struct {
    ngx_str_node_t                  sn;         /* the route name */
    ngx_http_route_guard_verdict_t  verdict;
    unsigned                        stale:1;
    unsigned                        cacheable:1;
} ngx_http_route_guard_entry_t;


static ngx_uint_t ngx_http_route_guard_same_file(
    ngx_http_route_guard_verdict_t *a, ngx_http_route_guard_verdict_t *b);
static ngx_int_t ngx_http_route_guard_watch_dir(
    ngx_http_route_guard_cache_t *cache, u_char *dir, size_t len);
static void ngx_http_route_guard_forget(ngx_http_route_guard_cache_t *cache,
    ngx_str_t *dir, u_char *file, size_t len);
static void ngx_http_route_guard_reset(ngx_http_route_guard_cache_t *cache);


static ngx_array_t         ngx_http_route_guard_caches;
static uint64_t            ngx_http_route_guard_last_version;


ngx_int_t
ngx_http_route_guard_cache_lookup(ngx_http_route_guard_cache_t *cache,
    ngx_str_t *name, ngx_http_route_guard_verdict_t *verdict,
    ngx_uint_t *watched)
{
    u_char                        *p, *last;
    ngx_http_route_guard_entry_t  *e;

    e = (ngx_http_route_guard_entry_t *)
            ngx_str_rbtree_lookup(&cache->entries, name,
                                  ngx_crc32_short(name->data, name->len));

    if (e != NULL && !e->stale && e->cacheable) {
        *verdict = e->verdict;
        return NGX_OK;
    }

    /* checked on every request anyway: no watch would help */

    if (e != NULL && !e->cacheable) {
        *watched = 0;
        return NGX_DECLINED;
    }

    /* watch "a" and "a/b" for "a/b/c"; the root is watched already */

    *watched = 1;
    last = name->data + name->len;

    for (p = name->data; p < last; p++) {
        if (*p == '/'
            && ngx_http_route_guard_watch_dir(cache, name->data,
                                              p - name->data)
               != NGX_OK)
        {
            *watched = 0;
            break;
        }
    }

    return NGX_DECLINED;
}


void
ngx_http_route_guard_cache_store(ngx_http_route_guard_cache_t *cache,
    ngx_str_t *name, ngx_http_route_guard_verdict_t *verdict,
    ngx_uint_t cacheable)
{
    u_char                        *p;
    uint32_t                       hash;
    ngx_http_route_guard_entry_t  *e;

    hash = ngx_crc32_short(name->data, name->len);

    e = (ngx_http_route_guard_entry_t *)
            ngx_str_rbtree_lookup(&cache->entries, name, hash);

    if (e != NULL) {

        /* the same file as before keeps its version: no recompilation */

        if (ngx_http_route_guard_same_file(&e->verdict, verdict)) {
            verdict->version = e->verdict.version;

        } else {
            verdict->version = ++ngx_http_route_guard_last_version;
        }

        e->verdict.result = verdict->result;
        e->verdict.bytecode = verdict->bytecode;
        e->verdict.version = verdict->version;
        e->verdict.dev = verdict->dev;
        e->verdict.ino = verdict->ino;
        e->verdict.size = verdict->size;
        e->verdict.mtime = verdict->mtime;
        e->verdict.ctime = verdict->ctime;
        e->stale = 0;
        e->cacheable = cacheable;

        return;
    }

    verdict->version = ++ngx_http_route_guard_last_version;

    /* the script path is kept with its terminating NUL, as found */

    e = ngx_alloc(sizeof(ngx_http_route_guard_entry_t)
                  + name->len + verdict->script.len + 1, ngx_cycle->log);
    if (e == NULL) {
        return;
    }

    p = (u_char *) e + sizeof(ngx_http_route_guard_entry_t);

    e->sn.node.key = hash;
    e->sn.str.len = name->len;
    e->sn.str.data = p;
    p = ngx_cpymem(p, name->data, name->len);

    e->verdict = *verdict;
    e->verdict.script.data = p;
    ngx_memcpy(p, verdict->script.data, verdict->script.len + 1);

    e->stale = 0;
    e->cacheable = cacheable;

    ngx_rbtree_insert(&cache->entries, &e->sn.node);
}


static ngx_uint_t
ngx_http_route_guard_same_file(ngx_http_route_guard_verdict_t *a,
    ngx_http_route_guard_verdict_t *b)
{
    return a->result == b->result
           && a->dev == b->dev
           && a->ino == b->ino
           && a->size == b->size
           && a->mtime.tv_sec == b->mtime.tv_sec
           && a->mtime.tv_nsec == b->mtime.tv_nsec
           && a->ctime.tv_sec == b->ctime.tv_sec
           && a->ctime.tv_nsec == b->ctime.tv_nsec;
}


/*
 * Watches <root>/<dir>.  A symlink as the last component is refused; a
 * symlink earlier in the path shows up as a watch that is already known
 * under another name.  Either way the caller's verdict is not cached.
 */

static ngx_int_t
ngx_http_route_guard_watch_dir(ngx_http_route_guard_cache_t *cache,
    u_char *dir, size_t len)
{
    u_char                        *p;
    ngx_int_t                      rc;
    ngx_str_t                      name;
    ngx_http_route_guard_root_t   *root;
    ngx_http_route_guard_watch_t  *w;
    u_char                         path[NGX_MAX_PATH];

    root = cache->root;

    if (root->path.len + 1 + len + 1 > NGX_MAX_PATH) {
        return NGX_DECLINED;
    }

    p = ngx_cpymem(path, root->path.data, root->path.len);
    *p++ = '/';
    p = ngx_cpymem(p, dir, len);
    *p = '\0';

    name.len = len;
    name.data = dir;

    rc = ngx_http_route_guard_watch_add(cache, path, &name, 0, &w);

    if (rc == NGX_DECLINED && ngx_errno == NGX_ENOSPC) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, ngx_errno,
                      "route guard: inotify_add_watch(\"%s\") failed, "
                      "routes below it are checked on every request "
                      "(raise fs.inotify.max_user_watches)", path);
    }

    if (rc != NGX_OK) {
        return NGX_DECLINED;
    }

    return (w->cache == cache
            && w->dir.len == len
            && ngx_memcmp(w->dir.data, dir, len) == 0)
           ? NGX_OK : NGX_DECLINED;
}


/* an event of a watch of "w->cache": the root or a directory below it */

void
ngx_http_route_guard_cache_event(ngx_http_route_guard_watch_t *w,
    struct inotify_event *ie)
{
    size_t                         len;
    ngx_http_route_guard_cache_t  *cache;

    cache = w->cache;

    /* the watch is gone, and with it what the cache knew below it */

    if (ie->mask & IN_IGNORED) {

        if (ie->wd == cache->wd) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "route guard: routes root \"%V\" is gone, "
                          "routes are checked on every request until "
                          "nginx is reloaded", &cache->root->path);
            cache->root->cache = NULL;
        }

        ngx_http_route_guard_reset(cache);
        return;
    }

    /*
     * A directory changed (created, removed, renamed, chmod-ed) or the
     * watched directory itself did: names below it may now resolve to
     * other files, and watch descriptors to other paths.  Start afresh.
     */

    if (ie->len == 0 || (ie->mask & (IN_ISDIR|IN_DELETE_SELF|IN_MOVE_SELF))) {
        ngx_http_route_guard_reset(cache);
        return;
    }

    len = ngx_strlen(ie->name);

    if (len > ROUTE_NAME_SUFFIX_LEN
        && ngx_strncmp(ie->name + len - ROUTE_NAME_SUFFIX_LEN,
                       ROUTE_NAME_SUFFIX, ROUTE_NAME_SUFFIX_LEN)
           == 0)
    {
        ngx_http_route_guard_forget(cache, &w->dir, (u_char *) ie->name,
                                    len - ROUTE_NAME_SUFFIX_LEN);
    }
}


/* events were lost: every cache starts afresh */

void
ngx_http_route_guard_cache_reset_all(void)
{
    ngx_uint_t                      i;
    ngx_http_route_guard_cache_t  **cache;

    cache = ngx_http_route_guard_caches.elts;

    for (i = 0; i < ngx_http_route_guard_caches.nelts; i++) {
        ngx_http_route_guard_reset(cache[i]);
    }
}


static void
ngx_http_route_guard_forget(ngx_http_route_guard_cache_t *cache,
    ngx_str_t *dir, u_char *file, size_t len)
{
    u_char                        *p;
    ngx_str_t                      name;
    ngx_http_route_guard_entry_t  *e;
    u_char                         buf[NGX_MAX_PATH];

    if (dir->len + 1 + len > NGX_MAX_PATH) {
        return;
    }

    p = buf;

    if (dir->len) {
        p = ngx_cpymem(p, dir->data, dir->len);
        *p++ = '/';
    }

    p = ngx_cpymem(p, file, len);

    name.data = buf;
    name.len = p - buf;

    e = (ngx_http_route_guard_entry_t *)
            ngx_str_rbtree_lookup(&cache->entries, &name,
                                  ngx_crc32_short(name.data, name.len));

    if (e == NULL) {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "route guard: route \"%V\" changed", &name);

    ngx_rbtree_delete(&cache->entries, &e->sn.node);
    ngx_free(e);
}


/*
 * Marks every verdict of the root stale and drops every watch below the
 * root.  Stale entries keep their file identity and version: a route
 * whose file did not change is not recompiled after a reset.
 */

static void
ngx_http_route_guard_reset(ngx_http_route_guard_cache_t *cache)
{
    ngx_rbtree_node_t             *node, *sentinel;
    ngx_http_route_guard_entry_t  *e;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "route guard: reset cache of \"%V\"", &cache->root->path);

    sentinel = cache->entries.sentinel;

    if (cache->entries.root != sentinel) {
        for (node = ngx_rbtree_min(cache->entries.root, sentinel);
             node != NULL;
             node = ngx_rbtree_next(&cache->entries, node))
        {
            e = (ngx_http_route_guard_entry_t *) node;
            e->stale = 1;
        }
    }

    ngx_http_route_guard_watch_drop(cache, cache->wd);
}


/*
 * One cache per routes root, each with a watch of its root; called once
 * the worker's inotify connection is up.
 */

ngx_int_t
ngx_http_route_guard_cache_init(ngx_cycle_t *cycle, ngx_array_t *roots)
{
    ngx_int_t                       rc;
    ngx_str_t                       dir;
    ngx_uint_t                      i;
    ngx_http_route_guard_root_t   **root;
    ngx_http_route_guard_cache_t   *cache, **slot;
    ngx_http_route_guard_watch_t   *w;

    if (ngx_array_init(&ngx_http_route_guard_caches, cycle->pool,
                       roots->nelts, sizeof(ngx_http_route_guard_cache_t *))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the root's own watch, recorded with an empty dir */

    ngx_str_set(&dir, "");

    root = roots->elts;

    for (i = 0; i < roots->nelts; i++) {

        cache = ngx_pcalloc(cycle->pool,
                            sizeof(ngx_http_route_guard_cache_t));
        if (cache == NULL) {
            return NGX_ERROR;
        }

        cache->root = root[i];
        ngx_rbtree_init(&cache->entries, &cache->sentinel,
                        ngx_str_rbtree_insert_value);

        rc = ngx_http_route_guard_watch_add(cache, root[i]->path.data, &dir,
                                            1, &w);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                          "route guard: inotify_add_watch(\"%V\") failed, "
                          "routes below it are checked on every request",
                          &root[i]->path);
            continue;
        }

        cache->wd = (int) w->node.key;

        /* roots on one directory (one per location, say) share a cache */

        if (w->cache != cache) {
            root[i]->cache = w->cache;
            continue;
        }

        slot = ngx_array_push(&ngx_http_route_guard_caches);
        if (slot == NULL) {
            return NGX_ERROR;
        }

        *slot = cache;
        root[i]->cache = cache;
    }

    return NGX_OK;
}


/*
 * Frees the verdicts; their trees are in the cycle's pool, which the
 * worker destroys next.
 */

void
ngx_http_route_guard_cache_exit(void)
{
    ngx_uint_t                      i;
    ngx_rbtree_t                   *tree;
    ngx_rbtree_node_t              *node;
    ngx_http_route_guard_cache_t  **cache;

    cache = ngx_http_route_guard_caches.elts;

    for (i = 0; i < ngx_http_route_guard_caches.nelts; i++) {
        tree = &cache[i]->entries;

        while (tree->root != tree->sentinel) {
            node = ngx_rbtree_min(tree->root, tree->sentinel);
            ngx_rbtree_delete(tree, node);
            ngx_free(node);     /* the entry: its first member */
        }
    }

    ngx_http_route_guard_caches.nelts = 0;
}
