
/*
 * Copyright (C) The gateway authors
 *
 * The worker's inotify(7) connection and its watches, keyed by watch
 * descriptor, for two users:
 *
 *   - the verdict caches (ngx_http_route_guard_cache.c): the routes root
 *     and the directories along the cached names, whose events this file
 *     hands to ngx_http_route_guard_cache_event();
 *
 *   - the modules tree (route_guard_modules), watched whole, down to
 *     NGX_HTTP_ROUTE_GUARD_TREE_DEPTH.  It serves the Lua side, not the
 *     guard's verdicts: gateway.modules reads
 *     ngx_http_route_guard_modules_generation() (or the variable
 *     $route_modules_generation) to hot-unload the user modules that
 *     routes require once one of them has changed.
 *
 * Every watch is added by ngx_http_route_guard_watch_add(), and its record
 * goes when the kernel drops the watch (IN_IGNORED) or its owner drops it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sys/inotify.h>
#include <dirent.h>

#include "ngx_http_route_guard.h"


#define NGX_HTTP_ROUTE_GUARD_WATCH_MASK                                      \
    (IN_CREATE|IN_DELETE|IN_MODIFY|IN_CLOSE_WRITE|IN_ATTRIB                  \
     |IN_MOVED_FROM|IN_MOVED_TO|IN_DELETE_SELF|IN_MOVE_SELF|IN_ONLYDIR)

/* how deep the modules tree is watched */
#define NGX_HTTP_ROUTE_GUARD_TREE_DEPTH  16

#define NGX_HTTP_ROUTE_GUARD_EVENTS_SIZE                                     \
    (64 * (sizeof(struct inotify_event) + NAME_MAX + 1))


static ngx_http_route_guard_watch_t *ngx_http_route_guard_find_watch(int wd);
static void ngx_http_route_guard_inotify_handler(ngx_event_t *ev);
static void ngx_http_route_guard_event(struct inotify_event *ie);
static void ngx_http_route_guard_modules_event(
    ngx_http_route_guard_watch_t *w, struct inotify_event *ie);
static void ngx_http_route_guard_watch_tree(u_char *path, size_t len,
    ngx_uint_t depth);


static ngx_fd_t            ngx_http_route_guard_inotify_fd = -1;
static ngx_connection_t   *ngx_http_route_guard_inotify;
static ngx_rbtree_t        ngx_http_route_guard_watches;
static ngx_rbtree_node_t   ngx_http_route_guard_watches_sentinel;

/* bumped on any change in the modules tree; 0 while it is not watched */
static uint64_t            ngx_http_route_guard_modules_gen;


ngx_int_t
ngx_http_route_guard_watch_init(ngx_cycle_t *cycle)
{
    ngx_connection_t  *c;

    ngx_rbtree_init(&ngx_http_route_guard_watches,
                    &ngx_http_route_guard_watches_sentinel,
                    ngx_rbtree_insert_value);

    ngx_http_route_guard_inotify_fd = inotify_init1(IN_NONBLOCK|IN_CLOEXEC);

    if (ngx_http_route_guard_inotify_fd == -1) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                      "route guard: inotify_init1() failed, "
                      "routes are checked on every request");
        return NGX_DECLINED;
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

    return NGX_OK;

failed:

    ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                  "route guard: inotify could not be set up, "
                  "routes are checked on every request");

    (void) close(ngx_http_route_guard_inotify_fd);
    ngx_http_route_guard_inotify_fd = -1;

    return NGX_DECLINED;
}


/*
 * Watches the directory "path" (NUL-terminated) for "cache", or for the
 * modules tree when "cache" is NULL, and sets *watch to its record, kept
 * under "dir".  IN_ONLYDIR refuses anything but a directory; with
 * "follow" 0, IN_DONT_FOLLOW refuses a symlink as the last component.
 * The kernel has one watch per directory: when it had one already, *watch
 * is the record made then, whose cache and dir the caller compares with
 * its own.  Returns NGX_DECLINED when inotify_add_watch() failed, with
 * ngx_errno telling why, and NGX_ERROR when no record could be allocated.
 */

ngx_int_t
ngx_http_route_guard_watch_add(ngx_http_route_guard_cache_t *cache,
    u_char *path, ngx_str_t *dir, ngx_uint_t follow,
    ngx_http_route_guard_watch_t **watch)
{
    int                            wd;
    ngx_http_route_guard_watch_t  *w;

    wd = inotify_add_watch(ngx_http_route_guard_inotify_fd, (char *) path,
                           NGX_HTTP_ROUTE_GUARD_WATCH_MASK
                           |(follow ? 0 : IN_DONT_FOLLOW));
    if (wd == -1) {
        return NGX_DECLINED;
    }

    w = ngx_http_route_guard_find_watch(wd);

    if (w != NULL) {
        *watch = w;
        return NGX_OK;
    }

    w = ngx_alloc(sizeof(ngx_http_route_guard_watch_t) + dir->len,
                  ngx_cycle->log);
    if (w == NULL) {
        (void) inotify_rm_watch(ngx_http_route_guard_inotify_fd, wd);
        return NGX_ERROR;
    }

    w->node.key = wd;
    w->cache = cache;
    w->dir.len = dir->len;
    w->dir.data = (u_char *) w + sizeof(ngx_http_route_guard_watch_t);
    ngx_memcpy(w->dir.data, dir->data, dir->len);

    ngx_rbtree_insert(&ngx_http_route_guard_watches, &w->node);

    *watch = w;

    return NGX_OK;
}


/* removes every watch of "cache" but the one with descriptor "keep" */

void
ngx_http_route_guard_watch_drop(ngx_http_route_guard_cache_t *cache,
    int keep)
{
    ngx_rbtree_node_t             *node, *next, *sentinel;
    ngx_http_route_guard_watch_t  *w;

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

        if (w->cache != cache || (int) w->node.key == keep) {
            continue;
        }

        (void) inotify_rm_watch(ngx_http_route_guard_inotify_fd,
                                (int) w->node.key);
        ngx_rbtree_delete(&ngx_http_route_guard_watches, node);
        ngx_free(w);
    }
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
    ngx_http_route_guard_watch_t  *w;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "route guard: inotify wd:%d mask:%xd name:\"%s\"",
                   ie->wd, ie->mask, ie->len ? ie->name : "");

    if (ie->mask & IN_Q_OVERFLOW) {

        /* events were lost: trust nothing */

        ngx_http_route_guard_cache_reset_all();

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
        return;     /* a watch dropped already */
    }

    if (w->cache == NULL) {
        ngx_http_route_guard_modules_event(w, ie);

    } else {
        ngx_http_route_guard_cache_event(w, ie);
    }

    /*
     * The kernel has dropped the watch: its record goes, unless the
     * handler above dropped it already along with others.
     */

    if (ie->mask & IN_IGNORED) {
        w = ngx_http_route_guard_find_watch(ie->wd);

        if (w != NULL) {
            ngx_rbtree_delete(&ngx_http_route_guard_watches, &w->node);
            ngx_free(w);
        }
    }
}


/*
 * The modules tree: any change in it may change a module that a route
 * requires.  Changes are rare and gateway.modules compares the files it
 * has loaded when the generation moves, so one counter for the whole tree
 * is enough; new subdirectories are watched as they appear.
 */

void
ngx_http_route_guard_watch_modules(ngx_str_t *modules)
{
    ngx_http_route_guard_watch_tree(modules->data, modules->len, 0);
    ngx_http_route_guard_modules_gen = 1;
}


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
    DIR                           *dir;
    size_t                         n;
    ngx_str_t                      name;
    struct stat                    sb;
    struct dirent                 *de;
    ngx_http_route_guard_watch_t  *w;
    u_char                         sub[NGX_MAX_PATH];

    name.len = len;
    name.data = path;

    switch (ngx_http_route_guard_watch_add(NULL, path, &name, 0, &w)) {

    case NGX_OK:
        break;

    case NGX_DECLINED:
        if (ngx_errno != NGX_ENOENT && ngx_errno != NGX_ENOTDIR) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, ngx_errno,
                          "route guard: inotify_add_watch(\"%s\") failed, "
                          "changes of the modules in it are not seen",
                          path);
        }

        return;

    default:
        return;
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


/*
 * Closes the inotify connection (one left open is reported as a leak) and
 * frees the records of the watches.
 */

void
ngx_http_route_guard_watch_exit(void)
{
    ngx_rbtree_t       *tree;
    ngx_rbtree_node_t  *node;

    if (ngx_http_route_guard_inotify != NULL) {
        ngx_close_connection(ngx_http_route_guard_inotify);
        ngx_http_route_guard_inotify = NULL;
        ngx_http_route_guard_inotify_fd = -1;
    }

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
