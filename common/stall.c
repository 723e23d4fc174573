/* stall.c - the process's own stalls (see stall.h). */
#include "common/stall.h"

#include <pthread.h>
#include <stdlib.h>

#include "common/timeutil.h"
#include "common/banned.h"

/* Threads that mark callbacks (HTTP threads, at most 16, and a few more). */
#define MAX_THREADS 64
/* Finished stalls kept; older ones fall out of every deadline that matters. */
#define RING 64

struct interval {
    int64_t start;
    int64_t end;
};

static int64_t busy_since[MAX_THREADS]; /* atomic; 0: idle */
static int n_slots; /* atomic */
static __thread int my_slot = -1;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct interval ring[RING];
static int ring_next;
static int ring_len;

static int64_t now_ms(void)
{
    return time_mono_us() / 1000;
}

int64_t stall_enter(void)
{
    int64_t t = now_ms();

    if (my_slot < 0) {
        int s = __atomic_fetch_add(&n_slots, 1, __ATOMIC_RELAXED);

        my_slot = s < MAX_THREADS ? s : MAX_THREADS; /* past the table: not tracked while on */
    }
    if (my_slot < MAX_THREADS)
        __atomic_store_n(&busy_since[my_slot], t > 0 ? t : 1, __ATOMIC_RELAXED);
    return t;
}

void stall_leave(int64_t token)
{
    if (my_slot >= 0 && my_slot < MAX_THREADS)
        __atomic_store_n(&busy_since[my_slot], 0, __ATOMIC_RELAXED);
    stall_record(token, now_ms());
}

void stall_record(int64_t start_ms, int64_t end_ms)
{
    if (end_ms - start_ms < STALL_MIN_MS)
        return;
    pthread_mutex_lock(&mu);
    ring[ring_next] = (struct interval){ start_ms, end_ms };
    ring_next = (ring_next + 1) % RING;
    if (ring_len < RING)
        ring_len++;
    pthread_mutex_unlock(&mu);
}

static int by_start(const void *a, const void *b)
{
    const struct interval *x = a;
    const struct interval *y = b;

    return x->start < y->start ? -1 : x->start > y->start;
}

int64_t stall_ms_since(int64_t since_ms)
{
    struct interval all[RING + MAX_THREADS];
    int64_t now = now_ms();
    int64_t total = 0;
    int64_t cur_start = 0;
    int64_t cur_end = 0;
    int n = 0;
    int slots = __atomic_load_n(&n_slots, __ATOMIC_RELAXED);
    int i;

    pthread_mutex_lock(&mu);
    for (i = 0; i < ring_len; i++)
        all[n++] = ring[i];
    pthread_mutex_unlock(&mu);
    for (i = 0; i < slots && i < MAX_THREADS; i++) {
        int64_t b = __atomic_load_n(&busy_since[i], __ATOMIC_RELAXED);

        if (b != 0 && now - b >= STALL_MIN_MS)
            all[n++] = (struct interval){ b, now };
    }
    qsort(all, (size_t)n, sizeof(all[0]), by_start);
    for (i = 0; i < n; i++) {
        int64_t s = all[i].start > since_ms ? all[i].start : since_ms;
        int64_t e = all[i].end;

        if (e <= s)
            continue;
        if (cur_end > cur_start && s <= cur_end) {
            if (e > cur_end)
                cur_end = e;
            continue;
        }
        total += cur_end - cur_start;
        cur_start = s;
        cur_end = e;
    }
    total += cur_end - cur_start;
    return total;
}
