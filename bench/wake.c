// What one sleep and wake-up of a thread costs on this machine, with no prober in it: the floor
// under every event a spread-out join flow waits for (bench/wake.sh builds and runs it).
//
// A thread waits in epoll_wait, as tokio's event loop does, and is woken N times, either by
// another thread writing an eventfd `gap_ms` apart (a reply arriving) or by the wait's own
// timeout (a timer); after each wake it touches `touch_kib` of memory (a flow's working set:
// hyper, the sockets, the run's state), so cold caches after the sleep are counted too. Prints
// the waiting thread's CPU time per wake (CLOCK_THREAD_CPUTIME_ID, ns resolution), beside the
// same work done back to back with no sleep between (the work's own cost).
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static int efd, ep, gap_ms, n;
static size_t touch;
static volatile unsigned char *mem;

static double thread_cpu_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void work(void) {
    // One byte per cache line: what a flow's code and data bring back into cache.
    for (size_t i = 0; i < touch; i += 64) mem[i]++;
}

static void *waker(void *arg) {
    (void)arg;
    struct timespec gap = {gap_ms / 1000, (long)(gap_ms % 1000) * 1000000L};
    uint64_t one = 1;
    for (int i = 0; i < n; i++) {
        nanosleep(&gap, NULL);
        if (write(efd, &one, sizeof one) != sizeof one) return NULL;
    }
    return NULL;
}

// Waits for `n` wakes (eventfd or timeout), doing the work after each; CPU µs per wake.
static double wakes(int by_timer) {
    struct epoll_event ev;
    uint64_t v;
    pthread_t t;
    if (!by_timer) pthread_create(&t, NULL, waker, NULL);
    double c0 = thread_cpu_us();
    for (int i = 0; i < n; i++) {
        int r = epoll_wait(ep, &ev, 1, by_timer ? gap_ms : 10000);
        if (r == 1 && read(efd, &v, sizeof v) < 0) return -1;
        work();
    }
    double c1 = thread_cpu_us();
    if (!by_timer) pthread_join(t, NULL);
    return (c1 - c0) / n;
}

int main(int argc, char **argv) {
    n = argc > 1 ? atoi(argv[1]) : 200;
    gap_ms = argc > 2 ? atoi(argv[2]) : 20;
    touch = (size_t)(argc > 3 ? atoi(argv[3]) : 64) * 1024;
    if (n <= 0 || n > 100000 || gap_ms <= 0 || gap_ms > 1000 || touch > (64u << 20)) {
        fprintf(stderr, "usage: wake [wakes 1..100000] [gap_ms 1..1000] [touch_kib]\n");
        return 2;
    }
    mem = calloc(touch + 64, 1);
    efd = eventfd(0, EFD_NONBLOCK);
    ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 0};
    epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
    double c0 = thread_cpu_us();
    for (int i = 0; i < n; i++) work();
    double own = (thread_cpu_us() - c0) / n;
    double by_event = wakes(0);
    double by_timer = wakes(1);
    printf("%d wakes %d ms apart, %zu KiB touched after each: CPU per wake %.1f us (eventfd "
           "from another thread), %.1f us (epoll_wait timeout); the work alone %.1f us\n",
           n, gap_ms, touch / 1024, by_event, by_timer, own);
    return 0;
}
