/*
 * segment.c - creating, attaching (with full validation), closing and
 * unlinking the shared-memory segment that holds one ring: the common header
 * and the slot arrays' layout; the ring kind (kind.h) checks its own counters.
 *
 * Atomic pairs in this file:
 *   S1 (create: release store of hdr.magic after everything is initialised)
 *      pairs with S2 (attach: acquire load of hdr.magic): an attacher that sees
 *      the magic sees the whole header, the zeroed counters and the slot seqs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kind.h"

static int name_is_valid(const char *name)
{
    if (name == NULL || name[0] != '/')
        return 0;
    size_t n = strlen(name + 1);
    if (n < 1 || n > SHMRING_NAME_MAX || strcmp(name, "/.") == 0 || strcmp(name, "/..") == 0)
        return 0; /* "." and ".." would name /dev/shm itself or its parent */
    for (const char *c = name + 1; *c; c++) {
        int ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                 (*c >= '0' && *c <= '9') || *c == '_' || *c == '-' || *c == '.';
        if (!ok)
            return 0;
    }
    return 1;
}

static size_t snapshot_bytes(size_t size);

/* Build the process-local handle around a validated mapping. */
static int handle_new(const char *name, struct shmring_segment *seg, size_t mapped_size,
                      const struct shmring_header *h, const struct stat *file, int readonly, shmring_t **out)
{
    shmring_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return SHMRING_ENOMEM;
    r->seg = seg;
    r->ops = shmring__kind(h->kind); /* validated: a kind we know */
    r->n_waitqs = r->ops->n_waitqs;
    for (uint32_t k = 0; k < r->n_waitqs; k++)
        r->waitqs[k] = (struct shmring_waitq *)((unsigned char *)seg + r->ops->waitq_offsets[k]);
    r->seg_dev = file->st_dev;
    r->seg_ino = file->st_ino;
    r->probe_fd = -1; /* the lock file's, set by the caller */
    r->lock_fd = -1;
    r->lock_ino = h->lock_ino;
    if (h->lock_ino != 0)
        shmring__lock_file_name(r->lock_name, name, h->lock_token);
    r->lock_process = shmring__process(); /* also starts counting forks, before any */
    r->readonly = readonly;
    atomic_init(&r->recover_after_ns, SHMRING_RECOVER_AFTER_DEFAULT_NS); /* until the caller sets it */
    r->mapped_size = mapped_size;
    r->slot_size = h->slot_size;
    r->capacity = h->capacity;
    r->mask = h->capacity - 1;
    r->maxsize = h->maxsize;
    r->kind = h->kind;
    r->flags = h->flags;
    r->meta_shift = shmring_meta_shift(h->flags, h->capacity);
    r->seq_bytes = r->meta_shift == 1 ? 2 : 4;
    r->seq_mask = r->seq_bytes == 2 ? UINT16_MAX : UINT32_MAX;
    r->cap_shift = (uint32_t)__builtin_ctzll(h->capacity);
    r->max_participants = h->max_participants;
    r->kind_args[0] = h->kind_args[0];
    r->kind_args[1] = h->kind_args[1];
    /* the kind's own area: validated inside the mapping; a READONLY handle's
     * copy holds its first kind_args[0] lines (a topic's subscribers) at most */
    struct shmring_layout L;
    if (r->ops->layout(h, &L) == SHMRING_OK && L.kind_offset != L.meta_offset &&
        (!readonly || L.kind_offset + (uint64_t)h->kind_args[0] * SHMRING_LINE <= snapshot_bytes(mapped_size)))
        r->kind_area = (unsigned char *)seg + L.kind_offset;
    r->parts = (struct shmring_participant_entry *)((unsigned char *)seg + h->participants_offset);
    /* a READONLY handle holds a copy of the header and table only (snapshot) */
    r->meta = readonly ? NULL : (unsigned char *)seg + h->meta_offset;
    r->payload = readonly ? NULL : (unsigned char *)seg + h->payload_offset;
    /* a private copy, checked to be terminated: peers cannot change what we parse */
    memcpy(r->schema, seg->schema, SHMRING_SCHEMA_MAX);
    r->schema[SHMRING_SCHEMA_MAX - 1] = '\0';
    strcpy(r->name, name);
    pthread_mutex_init(&r->members_lock, NULL);
    *out = r;
    return SHMRING_OK;
}

int shmring_create(const char *name, const shmring_params_t *p, shmring_t **out)
{
    *out = NULL;
    shmring__clear_detail();
    if (!name_is_valid(name))
        return SHMRING_ENAME;
    const struct shmring_kind *ops = shmring__kind(p->kind);
    if (ops == NULL)
        return shmring__fail(SHMRING_EINVAL, "kind %u is not a ring kind this build knows", p->kind);
    if ((p->mode & ~(uint32_t)0777) != 0) /* a mode is permission bits only */
        return shmring__fail(SHMRING_EINVAL, "mode 0%o has bits beyond the permissions, 0777", p->mode);
    uint32_t flags = p->records ? SHMRING_FLAG_RECORDS : 0;
    size_t schema_len = p->schema ? strnlen(p->schema, SHMRING_SCHEMA_MAX) : 0;
    /* records need a schema, byte rings have none */
    if (schema_len >= SHMRING_SCHEMA_MAX)
        return shmring__fail(SHMRING_EINVAL, "schema of %u bytes or more is over the limit, %u",
                             SHMRING_SCHEMA_MAX, SHMRING_SCHEMA_MAX - 1);
    if ((p->records != 0) != (schema_len != 0))
        return shmring__fail(SHMRING_EINVAL, p->records ? "a records ring needs a schema"
                                                        : "a byte ring takes no schema");
    if (p->policy > SHMRING_POLICY_OVERWRITE)
        return shmring__fail(SHMRING_EINVAL, "policy %u is not block (%u) or overwrite (%u)", p->policy,
                             SHMRING_POLICY_BLOCK, SHMRING_POLICY_OVERWRITE);
    /* what the header will say of the ring's shape, for the kind's layout */
    struct shmring_header shape = {.slot_size = p->slot_size, .maxsize = p->maxsize,
                                   .max_participants = p->max_participants ? p->max_participants
                                                                           : SHMRING_PARTICIPANTS_DEFAULT,
                                   .flags = flags | ops->flags |
                                            (p->policy == SHMRING_POLICY_OVERWRITE ? SHMRING_FLAG_OVERWRITE : 0),
                                   .kind_args = {p->max_subscribers, p->max_topic_len}};
    struct shmring_layout L;
    int rc = ops->layout(&shape, &L);
    if (rc != SHMRING_OK)
        return rc; /* which parameter is out of range */

    mode_t mode = (mode_t)p->mode;
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, mode);
    if (fd < 0)
        return shmring__open_error(errno);
    shmring__close_on_exec(fd);
    /* The lock file next, its CREATING byte held until the magic is out, and
     * named in the header at once: a creator killed before the magic leaves a
     * segment that tells which lock file is its own and that its maker is gone
     * (shmring_create_died), rather than one nothing may remove. */
    int lock_file;
    uint64_t lock_ino, lock_token;
    rc = shmring__lock_file_create(name, mode, &lock_file, &lock_ino, &lock_token);
    if (rc != SHMRING_OK)
        goto fail_fd;
    /* (only with a lock file: macOS, which has none, cannot write() shm objects) */
    if (lock_ino != 0 &&
        (pwrite(fd, &lock_ino, sizeof lock_ino, offsetof(struct shmring_header, lock_ino)) != sizeof lock_ino ||
         pwrite(fd, &lock_token, sizeof lock_token, offsetof(struct shmring_header, lock_token)) !=
             sizeof lock_token)) {
        rc = shmring__open_error(errno);
        goto fail_lock;
    }
    shmring__hook(SHMRING_HOOK_CREATING);
    /* shm_open's mode is filtered by the umask; sharing with other users needs
     * the exact mode (macOS refuses fchmod on shm objects, where umask rules). */
    if (fchmod(fd, mode) != 0 && errno != EINVAL) {
        rc = shmring__open_error(errno);
        goto fail_lock;
    }
    if (ftruncate(fd, (off_t)L.mapped_size) != 0) {
        rc = shmring__open_error(errno);
        goto fail_lock;
    }
#ifdef __linux__
    /* Reserve the pages now: a too-small /dev/shm (e.g. a container's 64 MiB)
     * is then an error here rather than a SIGBUS on some later put. */
    rc = posix_fallocate(fd, 0, (off_t)L.mapped_size);
    if (rc != 0 && rc != EOPNOTSUPP && rc != EINVAL) {
        rc = shmring__open_error(rc);
        goto fail_lock;
    }
#endif
    struct stat file;
    if (fstat(fd, &file) != 0) {
        rc = shmring__open_error(errno);
        goto fail_lock;
    }
    void *base = mmap(NULL, L.mapped_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        rc = shmring__open_error(errno);
        goto fail_lock;
    }
    close(fd); /* the mapping is what we use; liveness asks the lock file */
    fd = -1;

    struct shmring_segment *seg = base;
    struct shmring_header *h = &seg->hdr;
    h->layout_version = SHMRING_LAYOUT_VERSION;
    h->kind = p->kind;
    h->flags = shape.flags;
    h->kind_args[0] = shape.kind_args[0];
    h->kind_args[1] = shape.kind_args[1];
    if (schema_len)
        memcpy(seg->schema, p->schema, schema_len + 1);
    h->header_size = sizeof(struct shmring_segment);
    h->slot_size = p->slot_size;
    h->capacity = L.capacity;
    h->maxsize = p->maxsize;
    h->mapped_size = L.mapped_size;
    h->participants_offset = L.participants_offset;
    h->max_participants = shape.max_participants;
    h->participant_size = sizeof(struct shmring_participant_entry);
    h->meta_offset = L.meta_offset;
    h->payload_offset = L.payload_offset;
    h->creator_pid = (int64_t)getpid();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    h->created_unix_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    /* lock_ino and lock_token: already there, by the pwrite above */

    /* Slot words start at lap 0, free (all zero: a fresh segment already is).
     * Nobody else can see the segment before S1 below. */
    memset((unsigned char *)base + L.meta_offset, 0, L.payload_offset - L.meta_offset);

    /* S1: publishes the initialised segment; pairs with S2 in validate(). */
    atomic_store_explicit(&h->magic, SHMRING_MAGIC, memory_order_release);
    shmring__lock_file_published(lock_file);

    rc = handle_new(name, seg, L.mapped_size, h, &file, 0, out);
    if (rc == SHMRING_OK) {
        (*out)->probe_fd = lock_file;
        return rc;
    }
    munmap(base, L.mapped_size);

fail_lock:
    if (lock_ino != 0) {
        char lock_name[SHMRING_LOCK_NAME_SIZE];
        shmring__lock_file_name(lock_name, name, lock_token);
        shmring__lock_file_remove(lock_name, lock_ino);
    }
    if (lock_file >= 0)
        close(lock_file);
fail_fd:
    if (fd >= 0)
        close(fd);
    shm_unlink(name);
    return rc;
}

/* Check every header field against the mapping before anything else is read.
 * On success *h is a private copy of the header that the handle uses from now on. */
static int validate(struct shmring_segment *seg, uint64_t real_size, uint32_t kind,
                    struct shmring_header *h)
{
    /* S2: pairs with S1 in shmring_create. */
    uint64_t magic = atomic_load_explicit(&seg->hdr.magic, memory_order_acquire);
    if (magic == 0)
        return shmring__fail(SHMRING_ENOTREADY, "magic 0 in the header: not published (yet)");
    if (magic != SHMRING_MAGIC)
        return shmring__fail(SHMRING_EMAGIC, "magic 0x%016llx in the header is not shmring's, 0x%016llx",
                             (unsigned long long)magic, (unsigned long long)SHMRING_MAGIC);
    h->layout_version = seg->hdr.layout_version;
    h->kind = seg->hdr.kind;
    h->header_size = seg->hdr.header_size;
    h->slot_size = seg->hdr.slot_size;
    h->capacity = seg->hdr.capacity;
    h->maxsize = seg->hdr.maxsize;
    h->mapped_size = seg->hdr.mapped_size;
    h->participants_offset = seg->hdr.participants_offset;
    h->max_participants = seg->hdr.max_participants;
    h->participant_size = seg->hdr.participant_size;
    h->meta_offset = seg->hdr.meta_offset;
    h->payload_offset = seg->hdr.payload_offset;
    h->lock_ino = seg->hdr.lock_ino;
    h->lock_token = seg->hdr.lock_token;
    h->kind_args[0] = seg->hdr.kind_args[0];
    h->kind_args[1] = seg->hdr.kind_args[1];

    if (h->layout_version != SHMRING_LAYOUT_VERSION)
        return shmring__fail(SHMRING_EVERSION, "layout version %u in the header, this build's is %u",
                             h->layout_version, SHMRING_LAYOUT_VERSION);
    h->flags = seg->hdr.flags;
    if (h->flags & ~(uint32_t)SHMRING_FLAGS_KNOWN)
        return shmring__fail(SHMRING_ERESERVED, "flags 0x%x in the header, the known ones are 0x%x", h->flags,
                             (unsigned)SHMRING_FLAGS_KNOWN);
    /* created between 2000 and a day from now, by a positive pid */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t created = seg->hdr.created_unix_ns, now_ns = (uint64_t)now.tv_sec * 1000000000u;
    int rc;
    if (seg->hdr.creator_pid <= 0 || seg->hdr.creator_pid > INT32_MAX)
        return shmring__fail(SHMRING_ECREATOR, "creator pid %lld in the header is out of range 1..%d",
                             (long long)seg->hdr.creator_pid, INT32_MAX);
    if (created < UINT64_C(946684800) * 1000000000u || created > now_ns + UINT64_C(86400) * 1000000000u)
        return shmring__fail(SHMRING_ECREATOR, "creation time %llu ns in the header is before 2000 or over a day ahead",
                             (unsigned long long)created);
    const struct shmring_kind *ops = shmring__kind(kind);
    if (h->kind != kind || ops == NULL)
        return shmring__fail(SHMRING_EKIND, "kind %u in the header, asked for %u", h->kind, kind);
    if (h->header_size != sizeof(struct shmring_segment))
        return shmring__fail(SHMRING_EHEADER, "header size %u in the header, this build's is %zu", h->header_size,
                             sizeof(struct shmring_segment));
    if ((rc = shmring__check_range(SHMRING_ESLOTSIZE, "msg_size", h->slot_size, 1, SHMRING_SLOT_SIZE_MAX, " in the header")) ||
        (rc = shmring__check_range(SHMRING_EMAXSIZE, "maxsize", h->maxsize, 1, SHMRING_MAXSIZE_MAX, " in the header")) ||
        (rc = shmring__check_range(SHMRING_EPARTTABLE, "max_participants", h->max_participants, 1, SHMRING_PARTICIPANTS_MAX,
                          " in the header")))
        return rc;
    if (h->participant_size != sizeof(struct shmring_participant_entry))
        return shmring__fail(SHMRING_EPARTTABLE, "participant entry size %u in the header, this build's is %zu",
                             h->participant_size, sizeof(struct shmring_participant_entry));
    /* records rings carry a terminated, non-empty schema; byte rings none at all */
    size_t schema_len = strnlen(seg->schema, SHMRING_SCHEMA_MAX);
    if (schema_len == SHMRING_SCHEMA_MAX)
        return shmring__fail(SHMRING_ESCHEMA, "schema not terminated within %u bytes", SHMRING_SCHEMA_MAX);
    if (h->flags & SHMRING_FLAG_RECORDS && schema_len == 0)
        return shmring__fail(SHMRING_ESCHEMA, "a records ring without a schema");
    if (!(h->flags & SHMRING_FLAG_RECORDS) && schema_len != 0)
        return shmring__fail(SHMRING_ESCHEMA, "a byte ring with a schema of %zu bytes", schema_len);
    struct shmring_layout L;
    rc = ops->layout(h, &L); /* also the kind's parameters (kind_args, its flags) */
    if (rc != SHMRING_OK && rc != SHMRING_ENOMEM)
        return rc;
    if (rc != SHMRING_OK)
        return shmring__fail(SHMRING_EMAPSIZE, "msg_size %llu x maxsize %llu in the header need over 2^46 bytes",
                             (unsigned long long)h->slot_size, (unsigned long long)h->maxsize);
    if (h->capacity != L.capacity)
        return shmring__fail(SHMRING_ECAPACITY, "capacity %llu in the header, maxsize %llu needs %llu",
                             (unsigned long long)h->capacity, (unsigned long long)h->maxsize,
                             (unsigned long long)L.capacity);
    if (h->participants_offset != L.participants_offset || h->meta_offset != L.meta_offset ||
        h->payload_offset != L.payload_offset)
        return shmring__fail(SHMRING_EOFFSETS, "offsets %llu, %llu, %llu in the header, the layout's are %llu, %llu, %llu",
                             (unsigned long long)h->participants_offset, (unsigned long long)h->meta_offset,
                             (unsigned long long)h->payload_offset, (unsigned long long)L.participants_offset,
                             (unsigned long long)L.meta_offset, (unsigned long long)L.payload_offset);
    if (h->mapped_size != L.mapped_size)
        return shmring__fail(SHMRING_EMAPSIZE, "mapped size %llu in the header, the layout's is %llu",
                             (unsigned long long)h->mapped_size, (unsigned long long)L.mapped_size);
    /* macOS rounds shm sizes up to a page, so only a smaller file is wrong. */
    if (real_size < L.mapped_size)
        return shmring__fail(SHMRING_ETRUNCATED, "segment of %llu bytes, its header says %llu",
                             (unsigned long long)real_size, (unsigned long long)L.mapped_size);

    return ops->validate(seg, h); /* the kind's counters */
}

/* A handle that only looks (READONLY) reads a copy of the segment up to the end
 * of the largest participant table and subscriber table, never a mapping: a peer that truncates the
 * file cannot make an inspector fault (SIGBUS). On Linux; macOS cannot read()
 * shared memory objects, so there it maps them read-only. MAP_FAILED on error. */
static size_t snapshot_bytes(size_t size)
{
    size_t most = sizeof(struct shmring_segment) + SHMRING_PARTICIPANTS_MAX * sizeof(struct shmring_participant_entry) +
                  SHMRING_SUBSCRIBERS_MAX * sizeof(struct shmring_subscriber_entry);
    return size < most ? size : most;
}

static void *snapshot(int fd, size_t size)
{
#ifdef __linux__
    size_t want = snapshot_bytes(size), got = 0;
    unsigned char *copy = calloc(1, want);
    if (copy == NULL) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    while (got < want) {
        ssize_t n = pread(fd, copy + got, want - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) { /* shrunk since fstat: refuse, rather than show zeros */
            free(copy);
            errno = EBUSY;
            return MAP_FAILED;
        }
        got += (size_t)n;
    }
    return copy;
#else
    return mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
#endif
}

static void release(void *base, size_t size, int readonly)
{
#ifdef __linux__
    if (readonly) {
        free(base);
        return;
    }
#else
    (void)readonly;
#endif
    munmap(base, size);
}

int shmring_attach(const char *name, uint32_t kind, int flags, shmring_t **out)
{
    *out = NULL;
    shmring__clear_detail();
    if (!name_is_valid(name))
        return SHMRING_ENAME;
    int readonly = (flags & SHMRING_ATTACH_READONLY) != 0;
    int oflag = readonly ? O_RDONLY : O_RDWR;
#ifdef __linux__
    oflag |= O_NONBLOCK; /* a FIFO planted in /dev/shm must not block us (regular files ignore it) */
#endif
    int fd = shm_open(name, oflag, 0);
    if (fd < 0)
        return shmring__open_error(errno);
    shmring__close_on_exec(fd);
    struct stat st;
    int rc = SHMRING_OK;
    if (fstat(fd, &st) != 0)
        rc = shmring__open_error(errno);
    else if (!S_ISREG(st.st_mode))
        rc = shmring__fail(SHMRING_EFILETYPE, "its file mode is 0%o", (unsigned)st.st_mode);
    else if (!readonly && (st.st_mode & S_IWOTH) && st.st_uid != geteuid() && !(flags & SHMRING_ATTACH_TRUST_WRITABLE))
        /* any user could plant what this process would read (and unpickle) */
        rc = shmring__fail(SHMRING_EUNTRUSTED, "mode 0%o, owner uid %u, this process's %u",
                           (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid, (unsigned)geteuid());
    else if (st.st_size < (off_t)sizeof(struct shmring_segment))
        rc = shmring__fail(SHMRING_ETRUNCATED, "segment of %lld bytes, under the fixed part's %zu",
                           (long long)st.st_size, sizeof(struct shmring_segment));
    if (rc != SHMRING_OK) {
        close(fd);
        return rc;
    }
    size_t size = (size_t)st.st_size;
    void *base = readonly ? snapshot(fd, size) : mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        /* EBUSY: snapshot() read short */
        rc = errno == EBUSY ? shmring__fail(SHMRING_ETRUNCATED, "segment shrank while read") : shmring__open_error(errno);
        close(fd);
        return rc;
    }
    struct shmring_header h;
    rc = validate(base, size, kind, &h);
    if (rc == SHMRING_OK && readonly && h.participants_offset + (uint64_t)h.max_participants * h.participant_size >
                                            snapshot_bytes(size))
        rc = shmring__fail(SHMRING_ETRUNCATED, "segment shrank while read"); /* after fstat */
    close(fd); /* what we read is mapped or copied; liveness asks the lock file */
    if (rc == SHMRING_OK)
        rc = handle_new(name, base, size, &h, &st, readonly, out);
    if (rc != SHMRING_OK) {
        release(base, size, readonly);
        return rc;
    }
    (*out)->probe_fd = shmring__lock_file_open((*out)->lock_name, h.lock_ino, &st, readonly);
    return rc;
}

void shmring_close(shmring_t *r)
{
    if (r == NULL)
        return;
    while (r->members != NULL)
        shmring_participant_leave(r->members);
    release(r->seg, r->mapped_size, r->readonly);
    if (r->probe_fd >= 0)
        close(r->probe_fd);
    if (r->lock_fd >= 0)
        close(r->lock_fd); /* drops the locks of every participant left above */
    pthread_mutex_destroy(&r->members_lock);
    free(r);
}

/* What a segment's header says of its lock file, read as bytes (no mapping: the
 * file may be anything): 1 and its name and inode if it is a regular file
 * holding a header of our layout, or all zeros but for the lock file fields
 * (never published: see shmring_create); *published says which; else 0. */
static int lock_file_of(const char *name, char lock_name[SHMRING_LOCK_NAME_SIZE], uint64_t *ino,
                        struct stat *st, int *published)
{
    unsigned char h[sizeof(struct shmring_header)] = {0};
    /* up to the lock file fields: all an unpublished segment may hold so far */
    const ssize_t least = offsetof(struct shmring_header, lock_token) + sizeof(uint64_t);
    int fd = shm_open(name, O_RDONLY | O_NONBLOCK, 0);
    if (fd < 0)
        return 0;
    int ok = fstat(fd, st) == 0 && S_ISREG(st->st_mode) && pread(fd, h, sizeof h, 0) >= least;
    close(fd);
    if (!ok)
        return 0;
    uint64_t magic, token;
    uint32_t version;
    memcpy(&magic, h + offsetof(struct shmring_header, magic), sizeof magic);
    memcpy(&version, h + offsetof(struct shmring_header, layout_version), sizeof version);
    memcpy(ino, h + offsetof(struct shmring_header, lock_ino), sizeof *ino);
    memcpy(&token, h + offsetof(struct shmring_header, lock_token), sizeof token);
    *published = magic != 0;
    if ((*published && (magic != SHMRING_MAGIC || version != SHMRING_LAYOUT_VERSION)) || *ino == 0)
        return 0;
    shmring__lock_file_name(lock_name, name, token);
    return 1;
}

int shmring_unlink(const char *name)
{
    shmring__clear_detail();
    if (!name_is_valid(name))
        return SHMRING_ENAME;
    /* which lock file is this segment's: read before the name goes */
    char lock_name[SHMRING_LOCK_NAME_SIZE];
    uint64_t lock_ino;
    struct stat st;
    int published, has_lock = lock_file_of(name, lock_name, &lock_ino, &st, &published);
    if (shm_unlink(name) != 0)
        return shmring__open_error(errno);
    if (has_lock)
        shmring__lock_file_remove(lock_name, lock_ino);
    return SHMRING_OK;
}

int shmring_create_died(const char *name)
{
    shmring__clear_detail();
    if (!name_is_valid(name))
        return SHMRING_ENAME;
    char lock_name[SHMRING_LOCK_NAME_SIZE], again[SHMRING_LOCK_NAME_SIZE];
    uint64_t lock_ino, ino_again;
    struct stat st;
    int published;
    if (!lock_file_of(name, lock_name, &lock_ino, &st, &published) || published)
        return 0;
    int fd = shmring__lock_file_open(lock_name, lock_ino, &st, 1);
    if (fd < 0)
        return 0; /* not ours to look at, or not the file it names */
    /* No lock on the file at all: neither a creator (CREATING) nor a participant
     * (a ring whose magic a writer erased). Then the header once more: the
     * creator stores the magic before it drops CREATING, and the kernel orders
     * that drop before our look at the lock, so a creator that got as far as
     * publishing shows its magic now. */
    int held = shmring__lock_file_held(fd);
    close(fd);
    return !held && lock_file_of(name, again, &ino_again, &st, &published) && !published && ino_again == lock_ino &&
           strcmp(again, lock_name) == 0;
}

int shmring_remove(shmring_t *r)
{
    shmring__clear_detail();
    /* The name only if it still names our segment: after someone removed it,
     * it may name a ring made since, which is not ours to remove. */
    struct stat st;
    int fd = shm_open(r->name, O_RDONLY | O_NONBLOCK, 0);
    int found = fd >= 0 && fstat(fd, &st) == 0;
    if (fd >= 0)
        close(fd);
#ifdef __linux__
    char path[SHMRING_NAME_MAX + 16];
    snprintf(path, sizeof path, "/dev/shm%s", r->name);
    if (!found) /* a mode without read for us: the directory entry still tells */
        found = lstat(path, &st) == 0;
#endif
    int ours = found && st.st_dev == r->seg_dev && st.st_ino == r->seg_ino;
    int rc = ours ? shm_unlink(r->name) == 0 ? SHMRING_OK : shmring__open_error(errno) : SHMRING_ENOTFOUND;
    if (r->lock_ino != 0)
        shmring__lock_file_remove(r->lock_name, r->lock_ino); /* after: attachers find both or neither */
    return rc;
}

const char *shmring_lock_file(const shmring_t *r)
{
    return r->lock_ino != 0 ? r->lock_name : NULL;
}

void shmring_params(const shmring_t *r, shmring_params_t *out)
{
    out->slot_size = r->slot_size;
    out->maxsize = r->maxsize;
    out->kind = r->kind;
    out->max_participants = r->max_participants;
    out->mode = 0;
    out->records = (r->flags & SHMRING_FLAG_RECORDS) != 0;
    out->schema = r->schema;
    out->max_subscribers = r->kind_args[0];
    out->max_topic_len = r->kind_args[1];
    out->policy = r->flags & SHMRING_FLAG_OVERWRITE ? SHMRING_POLICY_OVERWRITE : SHMRING_POLICY_BLOCK;
}

uint64_t shmring_capacity(const shmring_t *r)
{
    return r->capacity;
}
