
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
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sys/inotify.h>
#include <dirent.h>

#include "ngx_http_route_guard.h"


#define NGX_HTTP_ROUTE_GUARD_WATCH_MASK                                      \
    (IN_CREATE|IN_DELETE|IN_MODIFY|IN_CLOSE_WRITE|IN_ATTRIB                  \
     |IN_MOVED_FROM|IN_MOVED_TO|IN_DELETE_SELF|IN_MOVE_SELF)

/* how deep the modules tree is watched */
#define NGX_HTTP_ROUTE_GUARD_TREE_DEPTH  16

#define NGX_HTTP_ROUTE_GUARD_EVENTS_SIZE                                     \
    (64 * (sizeof(struct inotify_event) + NAME_MAX + 1))


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


/*
 * A watched directory, the rbtree key is the watch descriptor: one along
 * the routes of a root ("cache" set, "dir" relative to the root), or one
 * of the modules tree ("cache" NULL, "dir" its absolute path).
 */

typedef struct {
    ngx_rbtree_node_t               node;
    ngx_http_route_guard_cache_t   *cache;
    ngx_str_t                       dir;
} ngx_http_route_guard_watch_t;


static ngx_int_t ngx_http_route_guard_watch_dir(
    ngx_http_route_guard_cache_t *cache, u_char *dir, size_t len);
static ngx_http_route_guard_watch_t *ngx_http_route_guard_find_watch(int wd);
static void ngx_http_route_guard_inotify_handler(ngx_event_t *ev);
static void ngx_http_route_guard_event(struct inotify_event *ie);
static void ngx_http_route_guard_forget(ngx_http_route_guard_cache_t *cache,
    ngx_str_t *dir, u_char *file, size_t len);
static void ngx_http_route_guard_reset(ngx_http_route_guard_cache_t *cache);
static void ngx_http_route_guard_watch_tree(u_char *path, size_t len,
    ngx_uint_t depth);
static void ngx_http_route_guard_modules_event(
    ngx_http_route_guard_watch_t *w, struct inotify_event *ie);
static ngx_uint_t ngx_http_route_guard_same_file(
    ngx_http_route_guard_verdict_t *a, ngx_http_route_guard_verdict_t *b);


static ngx_fd_t            ngx_http_route_guard_inotify_fd = -1;
static ngx_connection_t   *ngx_http_route_guard_inotify;
static ngx_array_t         ngx_http_route_guard_caches;
static ngx_rbtree_t        ngx_http_route_guard_watches;
static ngx_rbtree_node_t   ngx_http_route_guard_watches_sentinel;
static uint64_t            ngx_http_route_guard_last_version;

/* bumped on any change in the modules tree; 0 while it is not watched */
static uint64_t            ngx_http_route_guard_modules_gen;


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
 * Watches <root>/<dir>.  IN_DONT_FOLLOW|IN_ONLYDIR refuse a symlink as
 * the last component; a symlink earlier in the path shows up as a watch
 * descriptor that is already known under another name.  Either way the
 * caller's verdict is not cached.
 */

static ngx_int_t
ngx_http_route_guard_watch_dir(ngx_http_route_guard_cache_t *cache,
    u_char *dir, size_t len)
{
    int                            wd;
    u_char                        *p;
    ngx_err_t                      err;
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

    wd = inotify_add_watch(ngx_http_route_guard_inotify_fd, (char *) path,
                           NGX_HTTP_ROUTE_GUARD_WATCH_MASK
                           |IN_DONT_FOLLOW|IN_ONLYDIR);

    if (wd == -1) {
        err = ngx_errno;

        if (err == NGX_ENOSPC) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, err,
                          "route guard: inotify_add_watch(\"%s\") failed, "
                          "routes below it are checked on every request "
                          "(raise fs.inotify.max_user_watches)", path);
        }

        return NGX_DECLINED;
    }

    w = ngx_http_route_guard_find_watch(wd);

    if (w != NULL) {
        return (w->cache == cache
                && w->dir.len == len
                && ngx_memcmp(w->dir.data, dir, len) == 0)
               ? NGX_OK : NGX_DECLINED;
    }

    w = ngx_alloc(sizeof(ngx_http_route_guard_watch_t) + len,
                  ngx_cycle->log);
    if (w == NULL) {
        (void) inotify_rm_watch(ngx_http_route_guard_inotify_fd, wd);
        return NGX_DECLINED;
    }

    w->node.key = wd;
    w->cache = cache;
    w->dir.len = len;
    w->dir.data = (u_char *) w + sizeof(ngx_http_route_guard_watch_t);
    ngx_memcpy(w->dir.data, dir, len);

    ngx_rbtree_insert(&ngx_http_route_guard_watches, &w->node);

    return NGX_OK;
}


static ngx_http_route_guard_watch_t *
ngx_http_route_guard_find_watch(int wd)
{
    ngx_rbtree_node_t  *node, *sentinel;

    node = ngx_http_route_guard_watches.root;
    sentinel = ngx_http_route_guard_watches.sentinel;

    while (node != sentinel) {

        if ((ngx_rbtree_key_t) wd == node->key) {
            return (ngx_http_route_guard_watch_t *) node;
        }

        node = ((ngx_rbtree_key_t) wd < node->key) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_http_route_guard_inotify_handler(ngx_event_t *ev)
{
    u_char                *p, *last;
    ssize_t                n;
    ngx_err_t              err;
    struct inotify_event  *ie;
    u_char                 buf[NGX_HTTP_ROUTE_GUARD_EVENTS_SIZE]
                               __attribute__((aligned(8)));

    /* edge-triggered: read until the queue is empty */

    for ( ;; ) {
        n = read(ngx_http_route_guard_inotify_fd, buf, sizeof(buf));

        if (n == -1) {
            err = ngx_errno;

            if (err == NGX_EINTR) {
                continue;
            }

            if (err != NGX_EAGAIN) {
                ngx_log_error(NGX_LOG_ALERT, ev->log, err,
                              "route guard: read() of inotify failed");
            }

            return;
        }

        if (n == 0) {
            return;
        }

        for (p = buf, last = buf + n; p < last; p += sizeof(*ie) + ie->len) {
            ie = (struct inotify_event *) p;
            ngx_http_route_guard_event(ie);
        }
    }
}


static void
ngx_http_route_guard_event(struct inotify_event *ie)
{
    size_t                          len;
    ngx_uint_t                      i;
    ngx_http_route_guard_watch_t   *w;
    ngx_http_route_guard_cache_t  **cache;

    static ngx_str_t  suffix = ngx_string(NGX_HTTP_ROUTE_GUARD_SUFFIX);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "route guard: inotify wd:%d mask:%xd name:\"%s\"",
                   ie->wd, ie->mask, ie->len ? ie->name : "");

    if (ie->mask & IN_Q_OVERFLOW) {

        /* events were lost: trust nothing */

        cache = ngx_http_route_guard_caches.elts;

        for (i = 0; i < ngx_http_route_guard_caches.nelts; i++) {
            ngx_http_route_guard_reset(cache[i]);
        }

        if (ngx_http_route_guard_modules_gen) {
            ngx_http_route_guard_modules_gen++;
        }

        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "route guard: inotify queue overflowed, "
                      "every route is checked again");
        return;
    }

    w = ngx_http_route_guard_find_watch(ie->wd);

    if (w == NULL) {
        return;     /* a watch removed by reset() */
    }

    if (w->cache == NULL) {
        ngx_http_route_guard_modules_event(w, ie);
        return;
    }

    if (ie->mask & IN_IGNORED) {

        if (ie->wd == w->cache->wd) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "route guard: routes root \"%V\" is gone, "
                          "routes are checked on every request until "
                          "nginx is reloaded", &w->cache->root->path);
            w->cache->root->cache = NULL;
        }

        ngx_http_route_guard_reset(w->cache);
        ngx_rbtree_delete(&ngx_http_route_guard_watches, &w->node);
        ngx_free(w);
        return;
    }

    /*
     * A directory changed (created, removed, renamed, chmod-ed) or the
     * watched directory itself did: names below it may now resolve to
     * other files, and watch descriptors to other paths.  Start afresh.
     */

    if (ie->len == 0 || (ie->mask & (IN_ISDIR|IN_DELETE_SELF|IN_MOVE_SELF))) {
        ngx_http_route_guard_reset(w->cache);
        return;
    }

    len = ngx_strlen(ie->name);

    if (len > suffix.len
        && ngx_strncmp(ie->name + len - suffix.len, suffix.data, suffix.len)
           == 0)
    {
        ngx_http_route_guard_forget(w->cache, &w->dir, (u_char *) ie->name,
                                    len - suffix.len);
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
    ngx_rbtree_node_t             *node, *next, *sentinel;
    ngx_http_route_guard_entry_t  *e;
    ngx_http_route_guard_watch_t  *w;

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

    sentinel = ngx_http_route_guard_watches.sentinel;

    if (ngx_http_route_guard_watches.root == sentinel) {
        return;
    }

    for (node = ngx_rbtree_min(ngx_http_route_guard_watches.root, sentinel);
         node != NULL;
         node = next)
    {
        next = ngx_rbtree_next(&ngx_http_route_guard_watches, node);
        w = (ngx_http_route_guard_watch_t *) node;

        if (w->cache != cache || (int) w->node.key == cache->wd) {
            continue;
        }

        (void) inotify_rm_watch(ngx_http_route_guard_inotify_fd,
                                (int) w->node.key);
        ngx_rbtree_delete(&ngx_http_route_guard_watches, node);
        ngx_free(w);
    }
}


/*
 * The modules tree: any change in it may change a module that a route
 * requires.  Changes are rare and the Lua side compares the files it has
 * loaded when the generation moves, so one counter for the whole tree is
 * enough; new subdirectories are watched as they appear.
 */

unsigned int
ngx_http_route_guard_modules_generation(void)
{
    return (unsigned int) ngx_http_route_guard_modules_gen;
}


static void
ngx_http_route_guard_modules_event(ngx_http_route_guard_watch_t *w,
    struct inotify_event *ie)
{
    size_t  len;
    u_char  path[NGX_MAX_PATH];

    ngx_http_route_guard_modules_gen++;

    if (ie->mask & IN_IGNORED) {
        ngx_rbtree_delete(&ngx_http_route_guard_watches, &w->node);
        ngx_free(w);
        return;
    }

    if ((ie->mask & IN_ISDIR) && (ie->mask & (IN_CREATE|IN_MOVED_TO))
        && ie->len)
    {
        len = ngx_strlen(ie->name);

        if (w->dir.len + 1 + len + 1 > NGX_MAX_PATH) {
            return;
        }

        ngx_memcpy(path, w->dir.data, w->dir.len);
        path[w->dir.len] = '/';
        ngx_memcpy(path + w->dir.len + 1, ie->name, len + 1);

        ngx_http_route_guard_watch_tree(path, w->dir.len + 1 + len, 1);
    }
}


/* watches "path" (NUL-terminated) and the directories below it */

static void
ngx_http_route_guard_watch_tree(u_char *path, size_t len, ngx_uint_t depth)
{
    int                            wd;
    DIR                           *dir;
    size_t                         n;
    struct stat                    sb;
    struct dirent                 *de;
    ngx_http_route_guard_watch_t  *w;
    u_char                         sub[NGX_MAX_PATH];

    wd = inotify_add_watch(ngx_http_route_guard_inotify_fd, (char *) path,
                           NGX_HTTP_ROUTE_GUARD_WATCH_MASK
                           |IN_DONT_FOLLOW|IN_ONLYDIR);
    if (wd == -1) {
        if (ngx_errno != NGX_ENOENT && ngx_errno != NGX_ENOTDIR) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, ngx_errno,
                          "route guard: inotify_add_watch(\"%s\") failed, "
                          "changes of the modules in it are not seen",
                          path);
        }

        return;
    }

    if (ngx_http_route_guard_find_watch(wd) == NULL) {
        w = ngx_alloc(sizeof(ngx_http_route_guard_watch_t) + len,
                      ngx_cycle->log);
        if (w == NULL) {
            return;
        }

        w->node.key = wd;
        w->cache = NULL;
        w->dir.len = len;
        w->dir.data = (u_char *) w + sizeof(ngx_http_route_guard_watch_t);
        ngx_memcpy(w->dir.data, path, len);

        ngx_rbtree_insert(&ngx_http_route_guard_watches, &w->node);
    }

    if (depth >= NGX_HTTP_ROUTE_GUARD_TREE_DEPTH) {
        return;
    }

    dir = opendir((char *) path);
    if (dir == NULL) {
        return;
    }

    while ((de = readdir(dir)) != NULL) {

        if (de->d_name[0] == '.'
            && (de->d_name[1] == '\0'
                || (de->d_name[1] == '.' && de->d_name[2] == '\0')))
        {
            continue;
        }

        n = ngx_strlen(de->d_name);

        if (len + 1 + n + 1 > NGX_MAX_PATH) {
            continue;
        }

        ngx_memcpy(sub, path, len);
        sub[len] = '/';
        ngx_memcpy(sub + len + 1, de->d_name, n + 1);

        if (de->d_type == DT_DIR
            || (de->d_type == DT_UNKNOWN
                && lstat((char *) sub, &sb) == 0 && S_ISDIR(sb.st_mode)))
        {
            ngx_http_route_guard_watch_tree(sub, len + 1 + n, depth + 1);
        }
    }

    (void) closedir(dir);
}


ngx_int_t
ngx_http_route_guard_cache_init(ngx_cycle_t *cycle, ngx_array_t *roots,
    ngx_str_t *modules)
{
    ngx_uint_t                      i;
    ngx_connection_t               *c;
    ngx_http_route_guard_root_t   **root;
    ngx_http_route_guard_cache_t   *cache, **slot;
    ngx_http_route_guard_watch_t   *w;

    if (roots->nelts == 0 && modules->len == 0) {
        return NGX_OK;
    }

    ngx_rbtree_init(&ngx_http_route_guard_watches,
                    &ngx_http_route_guard_watches_sentinel,
                    ngx_rbtree_insert_value);

    if (ngx_array_init(&ngx_http_route_guard_caches, cycle->pool,
                       roots->nelts, sizeof(ngx_http_route_guard_cache_t *))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_route_guard_inotify_fd = inotify_init1(IN_NONBLOCK|IN_CLOEXEC);

    if (ngx_http_route_guard_inotify_fd == -1) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                      "route guard: inotify_init1() failed, "
                      "routes are checked on every request");
        return NGX_OK;
    }

    c = ngx_get_connection(ngx_http_route_guard_inotify_fd, cycle->log);
    if (c == NULL) {
        goto failed;
    }

    c->read->handler = ngx_http_route_guard_inotify_handler;
    c->read->log = cycle->log;

    if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_CLEAR_EVENT) != NGX_OK) {
        ngx_free_connection(c);
        goto failed;
    }

    ngx_http_route_guard_inotify = c;

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

        cache->wd = inotify_add_watch(ngx_http_route_guard_inotify_fd,
                                      (char *) root[i]->path.data,
                                      NGX_HTTP_ROUTE_GUARD_WATCH_MASK
                                      |IN_ONLYDIR);
        if (cache->wd == -1) {
            ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                          "route guard: inotify_add_watch(\"%V\") failed, "
                          "routes below it are checked on every request",
                          &root[i]->path);
            continue;
        }

        /* roots on one directory (one per location, say) share a cache */

        w = ngx_http_route_guard_find_watch(cache->wd);

        if (w != NULL) {
            root[i]->cache = w->cache;
            continue;
        }

        w = ngx_alloc(sizeof(ngx_http_route_guard_watch_t), cycle->log);
        if (w == NULL) {
            return NGX_ERROR;
        }

        w->node.key = cache->wd;
        w->cache = cache;
        ngx_str_null(&w->dir);

        ngx_rbtree_insert(&ngx_http_route_guard_watches, &w->node);

        slot = ngx_array_push(&ngx_http_route_guard_caches);
        if (slot == NULL) {
            return NGX_ERROR;
        }

        *slot = cache;
        root[i]->cache = cache;
    }

    if (modules->len) {
        ngx_http_route_guard_watch_tree(modules->data, modules->len, 0);
        ngx_http_route_guard_modules_gen = 1;
    }

    return NGX_OK;

failed:

    ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                  "route guard: inotify could not be set up, "
                  "routes are checked on every request");

    (void) close(ngx_http_route_guard_inotify_fd);
    ngx_http_route_guard_inotify_fd = -1;

    return NGX_OK;
}


/*
 * Nothing is left to exit(): the inotify connection (one left open is
 * reported as a leak), the verdicts, whose trees are in the cycle's pool
 * that the worker destroys next, and the watches.
 */

void
ngx_http_route_guard_cache_exit(void)
{
    ngx_uint_t                      i;
    ngx_rbtree_t                   *tree;
    ngx_rbtree_node_t              *node;
    ngx_http_route_guard_cache_t  **cache;

    if (ngx_http_route_guard_inotify != NULL) {
        ngx_close_connection(ngx_http_route_guard_inotify);
        ngx_http_route_guard_inotify = NULL;
        ngx_http_route_guard_inotify_fd = -1;
    }

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

    tree = &ngx_http_route_guard_watches;

    if (tree->sentinel == NULL) {
        return;                 /* never initialized */
    }

    while (tree->root != tree->sentinel) {
        node = ngx_rbtree_min(tree->root, tree->sentinel);
        ngx_rbtree_delete(tree, node);
        ngx_free(node);         /* the watch: its first member */
    }
}
