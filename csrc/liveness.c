/*
 * liveness.c - whether the process behind a participant entry still lives,
 * established so that neither pids nor other users can fool it.
 *
 *   LOCK  (Linux) the owner holds a write lock on byte i (its entry's index) of
 *         the ring's lock file, "/dev/shm/NAME~TOKEN" (TOKEN: 16 random hex
 *         digits, recorded in the header): an open-file-description
 *         lock (F_OFD_SETLK) taken through lock_fd, a description only its
 *         process holds. The kernel drops it when the process dies, whatever
 *         its pid namespace and under qemu-user too; a prober asks with
 *         F_OFD_GETLK through the handle's own description (probe_fd). A free
 *         lock on an ACTIVE entry: dead, or leaving after it withdrew everything.
 *         The lock file, not the segment, because anyone who may read a file
 *         can hold read locks on it, and a read lock keeps a write lock out: its
 *         mode grants reading only to those the segment grants writing, so a
 *         user who may only read the ring cannot touch it.
 *   PID   where such locks do not exist (macOS) or could not be taken: pid +
 *         start time + pid/time namespace identity, where only evidence of
 *         death counts and anything that cannot be checked is alive.
 *
 * No shared-memory atomics here: the entries' fields are participants.c's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <sys/random.h>
#endif
#ifdef __APPLE__
#include <sys/sysctl.h>
#endif

#include "internal.h"

/* Our descriptors of a segment never leak into programs this process execs. */
void shmring__close_on_exec(int fd)
{
    fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
}

/* What the OS says about a running pid: its start time and whether it is a
 * zombie. SHMRING_OK, or an error if the OS would not say (no /proc, no file
 * descriptor left, hidden by hidepid...): the caller must then assume alive. */
int shmring__process_info(pid_t pid, uint64_t *start_time, int *zombie)
{
#if defined(__linux__)
    /* Field 3 of /proc/PID/stat is the state, field 22 the start time in clock
     * ticks since boot. The command name (field 2) may contain spaces and ')',
     * so parse after the last ')'. */
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return SHMRING_ESYS;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return SHMRING_ESYS;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ')
        return SHMRING_ESYS;
    *zombie = p[2] == 'Z' || p[2] == 'X';
    for (int field = 2; field < 22; field++) {
        p = strchr(p + 1, ' ');
        if (p == NULL)
            return SHMRING_ESYS;
    }
    *start_time = strtoull(p + 1, NULL, 10);
    if (*zombie) {
        /* The state is the main thread's: a process whose main thread exited
         * while others run shows 'Z' too. Only a single-threaded one is a zombie. */
        snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return SHMRING_ESYS;
        char status[4096];
        n = read(fd, status, sizeof status - 1);
        close(fd);
        if (n <= 0)
            return SHMRING_ESYS;
        status[n] = '\0';
        const char *threads = strstr(status, "\nThreads:");
        if (threads == NULL)
            return SHMRING_ESYS;
        *zombie = strtol(threads + 10, NULL, 10) <= 1;
    }
    return SHMRING_OK;
#elif defined(__APPLE__)
    int mib[4] = {CTL_KERN, KERN_PROC, KERN_PROC_PID, (int)pid};
    struct kinfo_proc kp;
    size_t len = sizeof kp;
    if (sysctl(mib, 4, &kp, &len, NULL, 0) != 0 || len == 0)
        return SHMRING_ESYS;
    *zombie = kp.kp_proc.p_stat == SZOMB;
    *start_time = (uint64_t)kp.kp_proc.p_starttime.tv_sec * 1000000u +
                  (uint64_t)kp.kp_proc.p_starttime.tv_usec;
    return SHMRING_OK;
#else
    (void)pid;
    *start_time = 0;
    *zombie = 0;
    return SHMRING_OK;
#endif
}

/* Identity of the pid and time namespaces we live in: pids, and the start times
 * /proc reports, mean nothing across them. */
uint64_t shmring__namespaces(void)
{
    uint64_t id = 0;
#if defined(__linux__)
    struct stat st;
    if (stat("/proc/self/ns/pid", &st) == 0)
        id = (uint64_t)st.st_ino;
    if (stat("/proc/self/ns/time", &st) == 0)
        id = id * 1000003u ^ (uint64_t)st.st_ino;
#endif
    return id;
}

/* Forks this address space went through, counted in the child by a
 * pthread_atfork handler (registered at the first create or attach), which runs
 * inside fork() before anything else in the child (CPython frees other threads'
 * objects then, and their participants leave). "Is this still the process that
 * joined?" asks this, not the pid: a child in a new pid namespace can carry its
 * parent's pid number (both 1). */
static _Atomic unsigned long forks;
static pthread_once_t counting_forks = PTHREAD_ONCE_INIT;

static void count_fork(void)
{
    /* relaxed: the child is single-threaded here; later loads are its own */
    atomic_fetch_add_explicit(&forks, 1, memory_order_relaxed);
}

static void count_forks(void)
{
    pthread_atfork(NULL, NULL, count_fork);
}

unsigned long shmring__process(void)
{
    pthread_once(&counting_forks, count_forks);
    /* relaxed: only this process's own handler writes it (see count_fork) */
    return atomic_load_explicit(&forks, memory_order_relaxed);
}

/* PID liveness: only evidence makes a process dead: no such pid, a zombie, or
 * a pid now carried by a process started at another time. Anything we cannot
 * check (another namespace, /proc unreadable, out of descriptors) counts as
 * alive: recovering a live process's claim would corrupt the ring, waiting for
 * a dead one only delays. */
static int process_alive(pid_t pid, uint64_t start_time, uint64_t pid_ns)
{
    if (pid_ns != shmring__namespaces())
        return 1;
    if (pid <= 0)
        return 0;
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 0;
    uint64_t now_start = 0;
    int zombie = 0;
    if (shmring__process_info(pid, &now_start, &zombie) != SHMRING_OK)
        return 1;
    if (zombie)
        return 0; /* killed, not yet reaped by its parent */
    return start_time == 0 || now_start == start_time;
}

void shmring__lock_file_name(char out[SHMRING_LOCK_NAME_SIZE], const char *name, uint64_t token)
{
    snprintf(out, SHMRING_LOCK_NAME_SIZE, "%s~%016llx", name, (unsigned long long)token);
}

#if defined(F_OFD_SETLK) && defined(F_OFD_GETLK)
#define SHMRING_HAVE_OFD_LOCKS 1

static int ofd_lock(int fd, int cmd, short type, off_t at, short *found)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl); /* l_pid must be 0 for OFD locks */
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = at;
    fl.l_len = 1;
    int rc = fcntl(fd, cmd, &fl);
    if (found)
        *found = fl.l_type;
    return rc;
}

/* Read and write for the owner and for exactly those the segment's mode lets
 * write: a reader of the ring must not be able to open it (and read-lock it). */
static mode_t lock_file_mode(mode_t segment_mode)
{
    mode_t writers = segment_mode & 0222;
    return 0600 | writers | (writers << 1);
}

static uint64_t random_token(void)
{
    uint64_t token = 0;
    if (getrandom(&token, sizeof token, GRND_NONBLOCK) != (ssize_t)sizeof token) {
        struct timespec ts; /* no entropy yet (early boot): unique, if guessable */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        token ^= (uint64_t)ts.tv_nsec * UINT64_C(0x9E3779B97F4A7C15) ^ (uint64_t)ts.tv_sec << 20 ^ (uint64_t)getpid();
    }
    return token;
}

int shmring__lock_file_create(const char *name, mode_t segment_mode, int *fd_out, uint64_t *ino, uint64_t *token)
{
    mode_t mode = lock_file_mode(segment_mode);
    /* A name nobody can guess before it exists: a fixed one could be taken by
     * anyone watching /dev/shm between our segment appearing and this. */
    for (int attempt = 0; attempt < 8; attempt++) {
        char path[SHMRING_LOCK_NAME_SIZE];
        *token = random_token();
        shmring__lock_file_name(path, name, *token);
        int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL, mode);
        if (fd < 0 && errno == EEXIST)
            continue;
        if (fd < 0)
            return shmring__open_error(errno);
        shmring__close_on_exec(fd);
        struct stat st;
        /* the exact mode, as for the segment: shm_open's is filtered by the
         * umask. CREATING held until the segment is published (or we die). */
        if (fchmod(fd, mode) != 0 || fstat(fd, &st) != 0 ||
            ofd_lock(fd, F_OFD_SETLK, F_WRLCK, SHMRING_LOCK_CREATING, NULL) != 0) {
            int rc = shmring__open_error(errno);
            close(fd);
            shm_unlink(path);
            return rc;
        }
        *fd_out = fd;
        *ino = (uint64_t)st.st_ino;
        return SHMRING_OK;
    }
    return SHMRING_ELOCKFILE;
}

int shmring__lock_file_open(const char *lock_name, uint64_t ino, const struct stat *segment, int readonly)
{
    if (ino == 0)
        return -1; /* made where there are no such locks */
    /* O_NONBLOCK: whatever sits under that name, opening it never waits */
    int fd = shm_open(lock_name, (readonly ? O_RDONLY : O_RDWR) | O_NONBLOCK, 0);
    if (fd < 0 && !readonly && (errno == EACCES || errno == EPERM))
        fd = shm_open(lock_name, O_RDONLY | O_NONBLOCK, 0); /* to probe, at least */
    if (fd < 0)
        return -1;
    shmring__close_on_exec(fd);
    /* The file the segment names, made by its owner: a prober that asked
     * another file would find no locks on it, and recover live participants. */
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_ino != ino ||
        st.st_dev != segment->st_dev || st.st_uid != segment->st_uid) {
        close(fd);
        return -1;
    }
    return fd;
}

void shmring__lock_file_published(int fd)
{
    if (fd >= 0)
        ofd_lock(fd, F_OFD_SETLK, F_UNLCK, SHMRING_LOCK_CREATING, NULL);
}

int shmring__lock_file_held(int fd)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_RDLCK; /* conflicts with every write lock */
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = SHMRING_LOCK_CREATING + 1; /* every entry's byte and CREATING */
    return fcntl(fd, F_OFD_GETLK, &fl) != 0 || fl.l_type != F_UNLCK;
}

void shmring__lock_file_remove(const char *lock_name, uint64_t ino)
{
    int fd = shm_open(lock_name, O_RDONLY | O_NONBLOCK, 0);
    if (fd < 0)
        return;
    struct stat st;
    int same = fstat(fd, &st) == 0 && (uint64_t)st.st_ino == ino;
    close(fd);
    if (same)
        shm_unlink(lock_name);
}

/* 1 if some description holds entry i's write lock, 0 if none does, -1 if the
 * kernel would not say (or we have no lock file to ask about). */
static int lock_held(const shmring_t *r, uint32_t i)
{
    short found;
    if (r->probe_fd < 0 || ofd_lock(r->probe_fd, F_OFD_GETLK, F_RDLCK, (off_t)i, &found) != 0)
        return -1;
    return found != F_UNLCK;
}

static int same_file(int a, int b)
{
    struct stat sa, sb;
    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* This process's own open file description of the lock file, for its locks
 * (called with members_lock held). A description inherited across fork is the
 * parent's too, and its locks would live as long as either process: it is
 * dropped and the file opened again, through /proc (works after the name was
 * unlinked) or by name if that is still the same file. -1 if neither works. */
static int own_lock_fd(shmring_t *r)
{
    unsigned long process = shmring__process();
    if (r->lock_fd >= 0 && r->lock_process == process)
        return r->lock_fd;
    if (r->lock_fd >= 0)
        close(r->lock_fd);
    memset(r->locked, 0, sizeof r->locked); /* a new description holds nothing */
    int fd = -1;
    if (r->probe_fd >= 0) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", r->probe_fd);
        fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0) {
            fd = shm_open(r->lock_name, O_RDWR | O_NONBLOCK, 0);
            if (fd >= 0 && !same_file(fd, r->probe_fd)) {
                close(fd);
                fd = -1;
            }
        }
    }
    r->lock_fd = fd;
    r->lock_process = process;
    return fd;
}
#else
int shmring__lock_file_create(const char *name, mode_t segment_mode, int *fd_out, uint64_t *ino, uint64_t *token)
{
    (void)name;
    (void)segment_mode;
    *fd_out = -1;
    *ino = *token = 0; /* none: every entry has PID liveness */
    return SHMRING_OK;
}

int shmring__lock_file_open(const char *lock_name, uint64_t ino, const struct stat *segment, int readonly)
{
    (void)lock_name;
    (void)ino;
    (void)segment;
    (void)readonly;
    return -1;
}

void shmring__lock_file_published(int fd)
{
    (void)fd;
}

int shmring__lock_file_held(int fd)
{
    (void)fd;
    return 1; /* cannot tell */
}

void shmring__lock_file_remove(const char *lock_name, uint64_t ino)
{
    (void)lock_name;
    (void)ino;
}
#endif

int shmring__entry_alive(const shmring_t *r, uint32_t i, const struct shmring__entry_view *v)
{
    if (SHMRING_PART_STATUS(v->state) == SHMRING_PART_JOINING_LOCKED) {
        /* its liveness field is not written yet: only the lock can tell */
#ifdef SHMRING_HAVE_OFD_LOCKS
        return lock_held(r, i) != 0;
#else
        return 1;
#endif
    }
    if (SHMRING_PART_STATUS(v->state) == SHMRING_PART_JOINING)
        return 1;
    if (v->liveness == SHMRING_LIVENESS_PID)
        return process_alive(v->pid, v->start_time, v->pid_ns);
#ifdef SHMRING_HAVE_OFD_LOCKS
    if (v->liveness == SHMRING_LIVENESS_LOCK)
        return lock_held(r, i) != 0;
#else
    (void)r;
    (void)i;
#endif
    return 1; /* a lock we cannot probe here, or garbage: no evidence of death */
}

int shmring__lock_entry(shmring_t *r, uint32_t i)
{
#ifdef SHMRING_HAVE_OFD_LOCKS
    uint64_t bit = UINT64_C(1) << (i % 64);
    int fd = own_lock_fd(r);
    if (fd >= 0 && (r->locked[i / 64] & bit))
        return -1;
    for (int attempt = 0; fd >= 0 && attempt < 2; attempt++) {
        if (ofd_lock(fd, F_OFD_SETLK, F_WRLCK, (off_t)i, NULL) == 0) {
            r->locked[i / 64] |= bit;
            return 1;
        }
        /* What is in the way? A write lock: another joiner (or an owner) has the
         * entry, not ours to take. Nothing any more: try again. A read lock (only
         * a writer of the ring can open the file): the PID fallback then. */
        short found = F_UNLCK;
        if (ofd_lock(fd, F_OFD_GETLK, F_WRLCK, (off_t)i, &found) != 0 || found == F_RDLCK)
            break;
        if (found == F_WRLCK)
            return -1;
    }
#else
    (void)r;
    (void)i;
#endif
    return 0;
}

void shmring__unlock_entry(shmring_t *r, uint32_t i)
{
#ifdef SHMRING_HAVE_OFD_LOCKS
    uint64_t bit = UINT64_C(1) << (i % 64);
    if (r->lock_fd >= 0 && r->lock_process == shmring__process() && (r->locked[i / 64] & bit)) {
        ofd_lock(r->lock_fd, F_OFD_SETLK, F_UNLCK, (off_t)i, NULL);
        r->locked[i / 64] &= ~bit;
    }
#else
    (void)r;
    (void)i;
#endif
}

void shmring_after_fork(shmring_t *r)
{
    /* Another thread of the parent may have held the lock at fork: start afresh. */
    pthread_mutex_init(&r->members_lock, NULL);
#ifdef SHMRING_HAVE_OFD_LOCKS
    if (r->lock_fd >= 0) {
        close(r->lock_fd); /* the parent's locks stay with the parent */
        r->lock_fd = -1;
    }
    memset(r->locked, 0, sizeof r->locked);
#endif
}
