/*
 * errors.c - names for the SHMRING_E* result codes, the code for a system
 * error, and the detail of the last validation failure of this thread.
 * No shared-memory atomics here.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

const char *shmring_strerror(int rc)
{
    switch (rc) {
    case SHMRING_OK: return "success";
    case SHMRING_ESYS: return "system call failed";
    case SHMRING_EINVAL: return "invalid argument";
    case SHMRING_ENAME: return "invalid segment name (1-30 characters of A-Z a-z 0-9 . _ -, not . or ..)";
    case SHMRING_ENOTFOUND: return "no such shared-memory segment";
    case SHMRING_EEXIST: return "a shared-memory segment of that name already exists";
    case SHMRING_EPERM: return "permission denied";
    case SHMRING_ETOOBIG: return "message larger than the slot size";
    case SHMRING_ENOMEM: return "not enough memory (or /dev/shm space) for the ring";
    case SHMRING_EFULLTABLE: return "participant table is full (too many threads/processes attached)";
    case SHMRING_ECORRUPT: return "a slot holds an impossible length, or a counter an impossible position (corrupt segment)";
    case SHMRING_EJOIN: return "task_done() called more times than messages were put";
    case SHMRING_EINTR: return "interrupted by a signal";
    case SHMRING_ESHUTDOWN: return "the ring is shut down";
    case SHMRING_EFULLSUBS: return "the topic's subscriber table is full";
    case SHMRING_ERECORD: return "a records topic's message is exactly one record (slot_size bytes)";
    case SHMRING_ETRUNCATED: return "segment is smaller than its header says (truncated)";
    case SHMRING_ENOTREADY: return "segment was never initialised (no magic number yet)";
    case SHMRING_EMAGIC: return "not a shmring segment (bad magic number)";
    case SHMRING_EVERSION: return "segment has an incompatible layout version";
    case SHMRING_EKIND: return "segment holds a different kind of ring";
    case SHMRING_EHEADER: return "segment header size field is wrong";
    case SHMRING_ESLOTSIZE: return "segment slot size is out of range";
    case SHMRING_EMAXSIZE: return "segment maxsize is out of range";
    case SHMRING_ECAPACITY: return "segment capacity does not match its maxsize";
    case SHMRING_EPARTTABLE: return "segment participant table size is out of range";
    case SHMRING_EOFFSETS: return "segment area offsets do not match its parameters";
    case SHMRING_EMAPSIZE: return "segment mapped size does not match its parameters";
    case SHMRING_EPOSITIONS: return "segment position counters are inconsistent";
    case SHMRING_ERESERVED: return "segment header has non-zero flags or reserved bytes";
    case SHMRING_ECREATOR: return "segment creator pid or creation time is implausible";
    case SHMRING_ESCHEMA: return "segment record schema is missing, unterminated or unexpected";
    case SHMRING_EFILETYPE: return "not a shmring segment (not a regular file)";
    case SHMRING_EUNTRUSTED: return "segment is writable by every user and owned by another user: whoever wrote it "
                                    "decides what this process decodes";
    case SHMRING_ELOCKFILE: return "no fresh name for the ring's lock file (8 random names were all taken)";
    default: return "unknown shmring error";
    }
}

int shmring__open_error(int err)
{
    switch (err) {
    case ENOENT: return SHMRING_ENOTFOUND;
    case EEXIST: return SHMRING_EEXIST;
    case EACCES:
    case EPERM: return SHMRING_EPERM;
    case ENOSPC:
    case ENOMEM: return SHMRING_ENOMEM;
    case ELOOP: return SHMRING_EFILETYPE; /* a symbolic link (shm_open does not follow them) */
    case ENAMETOOLONG:
    case EINVAL: return SHMRING_ENAME;
    default: errno = err; return SHMRING_ESYS;
    }
}

/* What the last failed create / attach / unlink / remove of this thread found
 * wrong, "" when nothing (shmring__clear_detail at the start of each). */
static _Thread_local char detail[SHMRING_DETAIL_MAX];

const char *shmring_error_detail(void)
{
    return detail;
}

void shmring__clear_detail(void)
{
    detail[0] = '\0';
}

int shmring__fail(int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return rc;
}
