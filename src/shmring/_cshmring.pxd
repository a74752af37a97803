# The C API of csrc/shmring.h, declared once. Constants by name only: their
# values live in the header. Names in quotes are the C names (issue 11 renamed
# the queue's verbs and the accessors); the Cython names are those the binding
# used before, until it is renamed too.
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t


cdef extern from "shmring.h" nogil:
    enum:
        SHMRING_OK
        SHMRING_ESYS
        SHMRING_EINVAL
        SHMRING_ENAME
        SHMRING_ENOTFOUND
        SHMRING_EEXIST
        SHMRING_EPERM
        SHMRING_ETOOBIG
        SHMRING_ENOMEM
        SHMRING_EFULLTABLE
        SHMRING_ECORRUPT
        SHMRING_EJOIN
        SHMRING_EINTR
        SHMRING_ESHUTDOWN
        SHMRING_EFULLSUBS
        SHMRING_ERECORD
        SHMRING_EKIND
        SHMRING_ETRUNCATED
        SHMRING_EPOSITIONS
        SHMRING_EUNTRUSTED
        SHMRING_ELOCKFILE
        SHMRING_ATTACH_READONLY
        SHMRING_ATTACH_TRUST_WRITABLE
        SHMRING_KIND_QUEUE
        SHMRING_KIND_TOPIC
        SHMRING_POLICY_BLOCK
        SHMRING_POLICY_OVERWRITE
        SHMRING_WAIT_READABLE
        SHMRING_WAIT_WRITABLE
        SHMRING_WAIT_JOINED
        SHMRING_SHUT_NO
        SHMRING_SHUT_DRAIN
        SHMRING_SHUT_IMMEDIATE
        SHMRING_NAME_MAX
        SHMRING_SLOT_SIZE_MAX
        SHMRING_MAXSIZE_MAX

    ctypedef struct shmring_t:
        pass
    ctypedef struct shmring_participant_t:
        pass

    ctypedef struct shmring_params_t:
        uint64_t slot_size
        uint64_t maxsize
        uint32_t kind
        uint32_t max_participants
        uint32_t mode
        uint32_t records
        const char *schema
        uint32_t max_subscribers
        uint32_t max_topic_len
        uint32_t policy

    ctypedef struct shmring_span_t:
        uint64_t pos
        uint32_t n

    ctypedef struct shmring_stats_t:
        uint64_t write_pos
        uint64_t read_pos
        uint64_t tasks_done
        uint64_t lost
        uint64_t recoveries
        uint64_t discarded
        uint64_t expired
        uint32_t readers_waiting
        uint32_t writers_waiting
        uint32_t shut

    const char *shmring_strerror(int rc)
    const char *shmring_error_detail()
    int shmring_create(const char *name, const shmring_params_t *params, shmring_t **out)
    int shmring_attach(const char *name, uint32_t kind, int flags, shmring_t **out)
    void shmring_close(shmring_t *ring)
    int shmring_unlink(const char *name)
    int shmring_remove(shmring_t *ring)
    int shmring_create_died(const char *name)
    const char *shmring_lock_file(const shmring_t *ring)
    void shmring_params(const shmring_t *ring, shmring_params_t *out)
    uint64_t shmring_capacity(const shmring_t *ring)

    int shmring_participant_join(shmring_t *ring, shmring_participant_t **out)
    void shmring_participant_leave(shmring_participant_t *me)
    uint32_t shmring_participant_index(const shmring_participant_t *me)
    uint64_t shmring_participant_token(const shmring_participant_t *me)
    void shmring_after_fork(shmring_t *ring)

    enum:
        SHMRING_CLAIM_CONTIGUOUS
        SHMRING_CLAIM_EXPIRED
        SHMRING_CLAIM_EXPIRY_SET
        SHMRING_CLAIM_SUPERVISED
    int shmring_queue_put_claim(shmring_participant_t *me, uint32_t max_n, int flags, shmring_span_t *span)
    void shmring_queue_put_commit(shmring_participant_t *me, const shmring_span_t *span)
    void shmring_queue_put_commit_partial(shmring_participant_t *me, const shmring_span_t *span, uint32_t keep)
    int shmring_queue_get_claim(shmring_participant_t *me, uint32_t max_n, int flags, shmring_span_t *span)
    void shmring_queue_get_release(shmring_participant_t *me, const shmring_span_t *span)
    void shmring_copy_span(const shmring_t *ring, const shmring_span_t *span, void *buf, int into_ring)
    unsigned char *shmring_slot_payload(const shmring_t *ring, uint64_t pos)
    void shmring_slot_set_len(const shmring_t *ring, uint64_t pos, uint32_t len)
    int64_t shmring_slot_len(const shmring_t *ring, uint64_t pos)
    int shmring_queue_put_deadline(shmring_participant_t *me, const void *data, size_t len, uint64_t deadline_ns)

    int shmring_queue_task_done(shmring_participant_t *me, uint64_t n)
    void shmring_queue_count_lost(shmring_t *ring, uint64_t n)
    ctypedef struct shmring_adoption_t:
        shmring_span_t span
        uint32_t entry
        uint32_t state
    int shmring_queue_adopt(shmring_t *ring, uint32_t entry, int32_t pid, shmring_adoption_t *out)
    void shmring_queue_adopt_release(shmring_t *ring, const shmring_adoption_t *adoption)
    int shmring_queue_supervise(shmring_participant_t *me, uint64_t supervisor)
    void shmring_queue_count_expired(shmring_t *ring, uint64_t n)
    void shmring_queue_set_expiry(const shmring_t *ring, uint64_t pos, uint32_t n, uint64_t deadline_ns)
    int shmring_queue_expiry(const shmring_t *ring, uint64_t pos, uint64_t *deadline_ns)
    int shmring_queue_shutdown(shmring_participant_t *me, int immediate)
    uint64_t shmring_queue_unfinished(const shmring_t *ring)
    void shmring_queue_stats(const shmring_t *ring, shmring_stats_t *out)
    uint32_t shmring_participants_alive(const shmring_t *ring)
    ctypedef struct shmring_info_t:
        int64_t creator_pid
        uint64_t created_unix_ns
        uint64_t mapped_size
        uint32_t participants
        uint32_t participants_alive
    void shmring_info(const shmring_t *ring, shmring_info_t *out)
    enum:
        SHMRING_RECOVER_AFTER_DEFAULT_NS
    void shmring_set_recover_after(shmring_t *ring, uint64_t ns)
    int shmring_queue_unstick(shmring_t *ring, int what, uint64_t now_ns, uint64_t *recheck_ns)

    int shmring_queue_wait(shmring_participant_t *me, int what, uint64_t timeout_ns, uint32_t spin)
    void shmring_wake_all(shmring_t *ring)
    uint64_t shmring_now_ns()
    ctypedef struct shmring_clock_t:
        uint64_t coarse_ns
        uint64_t precise_ns
    int shmring_deadline_passed(shmring_clock_t *clock, uint64_t deadline_ns)

    # topics (topic.c, topic_recovery.c)
    ctypedef struct shmring_topic_sub_t:
        pass
    enum:
        SHMRING_TOPIC_PENDING
        SHMRING_START_LATEST
        SHMRING_START_OLDEST
        SHMRING_START_AT
    int shmring_topic_publish_claim(shmring_participant_t *me, uint32_t max_n, shmring_span_t *span)
    int shmring_topic_publish_begin(shmring_participant_t *me, const shmring_span_t *span)
    void shmring_topic_fill(const shmring_t *ring, uint64_t pos, const void *key, uint32_t key_len,
                            const void *data, uint32_t len)
    void shmring_topic_fill_records(const shmring_t *ring, const shmring_span_t *span, const void *buf,
                                    const void *key, uint32_t key_len)
    void shmring_topic_publish_commit(shmring_participant_t *me, const shmring_span_t *span, uint32_t keep)
    int shmring_topic_publish(shmring_participant_t *me, const void *key, uint32_t key_len, const void *data,
                              uint32_t len, shmring_span_t *span)
    int shmring_topic_subscribe(shmring_participant_t *owner, int start, uint64_t position, shmring_topic_sub_t **out)
    void shmring_topic_unsubscribe(shmring_topic_sub_t *sub)
    void shmring_topic_sub_free(shmring_topic_sub_t *sub)
    int shmring_topic_filter(shmring_topic_sub_t *sub, const void *prefix, uint32_t len, int add)
    int shmring_topic_recv(shmring_topic_sub_t *sub, void *key, uint32_t *key_len, void *data, uint32_t *len,
                           uint64_t *pos)
    int shmring_topic_recv_records(shmring_topic_sub_t *sub, void *buf, uint32_t max_n)
    uint64_t shmring_topic_position(const shmring_topic_sub_t *sub)
    uint64_t shmring_topic_lagged(const shmring_topic_sub_t *sub)
    uint64_t shmring_topic_take_lag(shmring_topic_sub_t *sub)
    int shmring_topic_wait(shmring_participant_t *me, shmring_topic_sub_t *sub, const shmring_span_t *span, int what,
                           uint64_t timeout_ns, uint32_t spin)
    int shmring_topic_unstick(shmring_participant_t *me, shmring_topic_sub_t *sub, const shmring_span_t *span,
                              int what, uint64_t now_ns, uint64_t *recheck_ns)
    void shmring_topic_set_slow_timeout(shmring_t *ring, uint64_t ns)
    void shmring_topic_shutdown(shmring_t *ring)
    ctypedef struct shmring_topic_stats_t:
        uint64_t published
        uint64_t holes
        uint64_t recoveries
        uint64_t detached
        uint32_t subscribers
        uint32_t shut
        uint32_t readers_waiting
        uint32_t writers_waiting
    void shmring_topic_stats(const shmring_t *ring, shmring_topic_stats_t *out)
    ctypedef struct shmring_topic_sub_info_t:
        uint64_t position
        uint64_t lagged
        uint64_t received
        int pid
        uint32_t detached
        uint32_t alive
    int shmring_topic_subscriber(const shmring_t *ring, uint32_t i, shmring_topic_sub_info_t *out)

    enum:
        SHMRING_HOOK_NONE
        SHMRING_HOOK_PUT_CLAIMED
        SHMRING_HOOK_PUT_COMMITTING
        SHMRING_HOOK_GET_CLAIMED
        SHMRING_HOOK_GET_RELEASING
        SHMRING_HOOK_CREATING
    void shmring_debug_set_hook(int point, uint64_t ns)
