/* emu.cc: the block scheduler behind tests/emu/emu.h.
 *
 * Each block's threads are fibers with their own stacks, run round robin
 * on the calling thread (on x86-64 a 20-instruction stack switch: glibc's
 * swapcontext makes a system call per switch, which made a block with
 * barriers ten times slower; ucontext elsewhere). A fiber runs until it finishes, waits
 * at __syncthreads, or posts a value for a warp shuffle. When every live
 * fiber of the block waits at the barrier, all go on; when every live lane
 * of a warp has posted, the lanes read each other's values (two slot
 * buffers alternate, so a lane's next post cannot overwrite a value another
 * lane has still to read). A lane that posts switches straight to the next
 * lane of its warp that can run (the one the scheduler would pick), and the
 * last to post releases the warp there: one stack switch per lane and
 * shuffle instead of two and a pass of the scheduler's loop. If no fiber
 * can go on, the block is stuck
 * (threads at different barriers): that aborts with the kernel's block and
 * the waiting threads, as a GPU would hang.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "emu.h"

uint3 threadIdx, blockIdx;
dim3  blockDim, gridDim;

namespace {

enum { RUN, BARRIER, WARP, DONE };
const size_t STACK = 256 * 1024;

#if defined(__x86_64__)
/* emu_switch: save the callee-saved registers, MXCSR and the x87 control
 * word on the current stack, store its pointer in *save, continue on to */
extern "C" void emu_switch(void **save, void *to);
__asm__(".text\n"
        ".globl emu_switch\n"
        ".type emu_switch,@function\n"
        "emu_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
        "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
        "  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n  addq $8, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size emu_switch, .-emu_switch\n");
#define EMU_FAST_SWITCH 1
#endif

struct fiber {
    ucontext_t ctx;
    void      *sp;   /* EMU_FAST_SWITCH: the saved stack pointer */
    int        state;
    uint3      tid;
    int        lane, warp;
};

struct warp_slots {
    uint64_t v[2][32];
    uint32_t posted[2];   /* lanes whose value is in v[ph] (set at release) */
    int      phase;
    unsigned live, waiting;   /* lanes not finished; lanes that posted this phase */
};

#ifdef EMU_FAST_SWITCH
void                        *sched_sp;
#else
ucontext_t                   sched;
#endif
std::vector<fiber>           fibers;
std::vector<char>            stacks;
std::vector<warp_slots>      warps;
std::vector<unsigned char>   smem;
fiber                       *cur;
unsigned                     block_live, block_barrier;
int                          synced;    /* the block called a barrier or a shuffle */
int                          direct;    /* threads run as plain calls: no barrier allowed */
bool                         block_rev;  /* this block runs its warps and lanes last to first */
unsigned                     block_n;    /* its threads */

void no_barrier_here(const char *what) {
    fprintf(stderr, "emu: %s in block (%u,%u,%u), but the launch's first block made none, so "
            "its later blocks run without fibers: a kernel whose blocks differ in that is not "
            "supported by tests/emu\n", what, blockIdx.x, blockIdx.y, blockIdx.z);
    abort();
}
const std::function<void()> *body;

/* ASan (a sanitizer build of the emulator: kernels' device-memory accesses
 * checked like compute-sanitizer's memcheck) must be told of every stack
 * switch */
#if defined(__SANITIZE_ADDRESS__)
extern "C" void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom,
                                               size_t size);
extern "C" void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
                                                size_t *size_old);
const void *main_stack_bottom;
size_t      main_stack_size;
const void *san_bottom_old;   /* trampoline: the stack a new fiber was started from */
size_t      san_size_old;
#define SAN_START(save, bottom, size) __sanitizer_start_switch_fiber(save, bottom, size)
#define SAN_FINISH(save, bo, so) __sanitizer_finish_switch_fiber(save, bo, so)
#else
#define SAN_START(save, bottom, size) ((void)0)
#define SAN_FINISH(save, bo, so) ((void)0)
#endif

/* to the scheduler from the running fiber, and back into fiber f */
inline void yield_to_sched(fiber *f) {
    SAN_START(nullptr, main_stack_bottom, main_stack_size);
#ifdef EMU_FAST_SWITCH
    emu_switch(&f->sp, sched_sp);
#else
    if (swapcontext(&f->ctx, &sched)) abort();
#endif
    SAN_FINISH(nullptr, nullptr, nullptr);
}
inline void resume(fiber *f) {
    size_t i = (size_t)(f - fibers.data());
    (void)i;
    SAN_START(nullptr, &stacks[i * STACK], STACK);
#ifdef EMU_FAST_SWITCH
    emu_switch(&sched_sp, f->sp);
#else
    if (swapcontext(&sched, &f->ctx)) abort();
#endif
    SAN_FINISH(nullptr, nullptr, nullptr);
}

/* from the running fiber f straight into fiber to (a lane of its warp) */
inline void switch_to(fiber *f, fiber *to) {
    size_t i = (size_t)(to - fibers.data());
    (void)i;
    cur = to;
    threadIdx = to->tid;
    SAN_START(nullptr, &stacks[i * STACK], STACK);
#ifdef EMU_FAST_SWITCH
    emu_switch(&f->sp, to->sp);
#else
    if (swapcontext(&f->ctx, &to->ctx)) abort();
#endif
    SAN_FINISH(nullptr, nullptr, nullptr);
}

/* warp w's lanes [lo, hi) that posted go on: their values are readable in
 * the slot buffer of this phase */
void warp_release(warp_slots &ws, unsigned lo, unsigned hi) {
    uint32_t mask = 0;
    for (unsigned i = lo; i < hi; i++)
        if (fibers[i].state == WARP) {
            mask |= 1u << (i - lo);
            fibers[i].state = RUN;
        }
    ws.posted[ws.phase & 1] = mask;
    ws.phase++;
    ws.waiting = 0;
}

/* the first lane of warp w that can run in the block's order (block_rev:
 * last to first), or nullptr */
fiber *first_lane(unsigned w) {
    const unsigned lo = w * 32, hi = lo + 32 < block_n ? lo + 32 : block_n;
    if (!block_rev) {
        for (unsigned i = lo; i < hi; i++)
            if (fibers[i].state == RUN) return &fibers[i];
    } else {
        for (unsigned i = hi; i-- > lo;)
            if (fibers[i].state == RUN) return &fibers[i];
    }
    return nullptr;
}

/* the lane of f's warp that runs after f in the block's order and can run,
 * or nullptr */
fiber *next_lane(fiber *f) {
    const unsigned lo = (unsigned)f->warp * 32, hi = lo + 32 < block_n ? lo + 32 : block_n;
    const unsigned at = (unsigned)(f - fibers.data());
    if (!block_rev) {
        for (unsigned i = at + 1; i < hi; i++)
            if (fibers[i].state == RUN) return &fibers[i];
    } else {
        for (unsigned i = at; i-- > lo;)
            if (fibers[i].state == RUN) return &fibers[i];
    }
    return nullptr;
}

void trampoline() {
#if defined(__SANITIZE_ADDRESS__)
    /* the stack this fiber was started from: the thread's own when the
     * scheduler resumed it (kept for the switches back to it), another
     * lane's when that lane switched straight here (warp_post), which must
     * not replace it. (Globals, not locals: this frame is never left, and
     * the redzones of its locals would stay poisoned in the stack memory
     * the next block's fibers are set up in.) */
    SAN_FINISH(nullptr, &san_bottom_old, &san_size_old);
    if ((const char *)san_bottom_old < stacks.data() ||
        (const char *)san_bottom_old >= stacks.data() + stacks.size())
        main_stack_bottom = san_bottom_old, main_stack_size = san_size_old;
#endif
    (*body)();
    cur->state = DONE;
    block_live--;
    warps[cur->warp].live--;
#ifdef EMU_FAST_SWITCH
    SAN_START(nullptr, main_stack_bottom, main_stack_size);   /* (a fake stack is not kept) */
    emu_switch(&cur->sp, sched_sp);   /* never resumed */
    abort();
#endif
    /* ucontext: uc_link returns to the scheduler */
}

void run_block(unsigned nthreads) {
    fibers.resize(nthreads);
    warps.assign((nthreads + 31) / 32, warp_slots{});
    if (stacks.size() < nthreads * STACK) stacks.resize(nthreads * STACK);
    for (unsigned i = 0; i < nthreads; i++) {
        fiber &f = fibers[i];
        f.state = RUN;
        f.tid = {i % blockDim.x, i / blockDim.x % blockDim.y, i / (blockDim.x * blockDim.y)};
        f.lane = (int)(i % 32), f.warp = (int)(i / 32);
#ifdef EMU_FAST_SWITCH
        /* the frame emu_switch pops: MXCSR and x87 control word, six
         * registers, then the return address = trampoline, entered with
         * rsp = 8 mod 16 as after a call */
        uintptr_t top = ((uintptr_t)&stacks[i * STACK] + STACK) & ~(uintptr_t)15;
        uint64_t *sp = (uint64_t *)(top - 72);
        sp[0] = 0x1F80u | (uint64_t)0x037Fu << 32;
        for (int r = 1; r <= 6; r++) sp[r] = 0;
        sp[7] = (uint64_t)(uintptr_t)trampoline;
        f.sp = sp;
#else
        if (getcontext(&f.ctx)) abort();
        f.ctx.uc_stack.ss_sp = &stacks[i * STACK];
        f.ctx.uc_stack.ss_size = STACK;
        f.ctx.uc_link = &sched;
        makecontext(&f.ctx, trampoline, 0);
#endif
    }
    block_live = nthreads, block_barrier = 0;
    for (size_t w = 0; w < warps.size(); w++) {
        unsigned lo = (unsigned)w * 32;
        warps[w].live = (lo + 32 < nthreads ? lo + 32 : nthreads) - lo;
        warps[w].waiting = 0;
    }
    /* warp by warp: run its lanes until each blocks; a warp whose live
     * lanes all posted a shuffle goes on at once (no sweep of the block).
     * Blocks of odd linear index run their warps and lanes last to first:
     * a thread that reads what another writes between the same two
     * barriers (a missing __syncthreads) then reads it before the write in
     * one block or the other (the slot's garbage: NaN, emu_shared_poison) */
    const unsigned long long lin =
        blockIdx.x + (unsigned long long)gridDim.x * (blockIdx.y + (unsigned long long)gridDim.y * blockIdx.z);
    const bool rev = lin & 1;
    block_rev = rev, block_n = nthreads;
    const size_t nw = warps.size();
    for (;;) {
        int progress = 0;
        for (size_t wi = 0; wi < nw; wi++) {
            const size_t w = rev ? nw - 1 - wi : wi;
            unsigned lo = (unsigned)w * 32, hi = lo + 32 < nthreads ? lo + 32 : nthreads;
            for (;;) {
                /* the warp's first lane that can run, each time from the
                 * start: a lane that released its warp (warp_post) went on
                 * from the first lane, so after a lane of that round stops
                 * at a barrier or exits, the lanes after it are next, as
                 * when the release was made here at the end of a pass and
                 * the pass started over (not the lanes after the one
                 * resumed here, which would leave those before it for the
                 * block's next sweep) */
                while (fiber *f = first_lane((unsigned)w)) {
                    cur = f;
                    threadIdx = f->tid;
                    resume(f);
                    progress = 1;
                }
                warp_slots &ws = warps[w];
                if (ws.waiting == 0 || ws.waiting != ws.live) break;
                warp_release(ws, lo, hi);
            }
        }
        if (block_live == 0) return;
        if (block_barrier == block_live) {
            for (unsigned i = 0; i < nthreads; i++)
                if (fibers[i].state == BARRIER) fibers[i].state = RUN;
            block_barrier = 0;
            continue;
        }
        if (progress) continue;
        fprintf(stderr, "emu: block (%u,%u,%u) is stuck: %u live threads, %u at __syncthreads, "
                "the others at a warp shuffle of a partly exited or diverged warp\n",
                blockIdx.x, blockIdx.y, blockIdx.z, block_live, block_barrier);
        abort();
    }
}

}   // namespace

void __syncthreads(void) {
    if (direct) no_barrier_here("__syncthreads");
    synced = 1;
    fiber *f = cur;
    f->state = BARRIER;
    block_barrier++;
    yield_to_sched(f);
    threadIdx = f->tid;
}

int emu_lane(void) {
    if (direct) no_barrier_here("a lane query");
    return cur->lane;
}

void emu_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "emu: block (%u,%u,%u) thread (%u,%u,%u): ", blockIdx.x, blockIdx.y,
            blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

/* warp_post: the running lane posts v and waits until its warp's live
 * lanes all posted; returns the slot buffer they posted into */
static warp_slots &warp_post(uint64_t v, const char *what, int *ph_out) {
    if (direct) no_barrier_here(what);
    synced = 1;
    fiber *f = cur;
    warp_slots &ws = warps[f->warp];
    int ph = ws.phase & 1;
    ws.v[ph][f->lane] = v;
    f->state = WARP;
    ws.waiting++;
    /* on to the next lane that can run, as the scheduler would; the last
     * to post releases the warp and goes on from its first lane */
    fiber *to = next_lane(f);
    if (!to && ws.waiting == ws.live) {
        const unsigned lo = (unsigned)f->warp * 32;
        warp_release(ws, lo, lo + 32 < block_n ? lo + 32 : block_n);
        to = first_lane((unsigned)f->warp);   /* f at least */
    }
    if (!to) yield_to_sched(f);
    else if (to != f) switch_to(f, to);
    cur = f;
    threadIdx = f->tid;
    *ph_out = ph;
    return ws;
}

uint64_t emu_warp(uint64_t v, int src, unsigned mask) {
    int ph;
    warp_slots &ws = warp_post(v, "a warp shuffle", &ph);
    fiber *f = cur;
    /* a _sync shuffle whose mask names a lane that exited (or is not in
     * the block) or went elsewhere: undefined on a GPU (it may hang) */
    if (!(mask >> f->lane & 1) || (mask & ~ws.posted[ph]))
        emu_fail("a warp shuffle with mask 0x%08x, but lanes 0x%08x took part", mask,
                 ws.posted[ph]);
    if (src < 0 || src >= 32 || !(ws.posted[ph] >> src & 1)) return v;
    return ws.v[ph][src];
}

uint32_t emu_warp_all(uint64_t v, uint64_t all[32]) {
    int ph;
    warp_slots &ws = warp_post(v, "a warp-wide exchange", &ph);
    for (int l = 0; l < 32; l++) all[l] = ws.posted[ph] >> l & 1 ? ws.v[ph][l] : 0;
    return ws.posted[ph];
}

void *emu_dyn_smem(void) { return smem.data(); }

/* shared memory starts every block as garbage on a GPU (often the previous
 * block's data): here as 0xFF bytes, a NaN in every float and bf16 (and -1
 * in every integer), so a kernel that reads a slot its block never wrote
 * gets NaNs its results show. block_seq numbers the blocks of all launches
 * (from 1); emu_shared_poison (cu2cc.py puts a call after each static
 * __shared__ array) fills the array at the first thread of each block that
 * reaches it, before any of that block's threads can have written it */
static unsigned long long block_seq;
void emu_shared_poison(void *p, size_t n) {
    static std::map<void *, unsigned long long> *poisoned;   /* array -> block it was filled in */
    if (!poisoned) poisoned = new std::map<void *, unsigned long long>;
    unsigned long long &at = (*poisoned)[p];
    if (at == block_seq) return;
    at = block_seq;
    memset(p, 0xFF, n);
}

extern "C" int emu_stat_launch(void);   /* emu_rt.c: SAM2AMG_EMU_STATS; 1 when counting */

/* SAM2AMG_EMU_STATS: the launches per kernel (name as launched, template
 * arguments included), printed at exit before emu_rt.c's totals, most first */
static std::map<std::string, unsigned long long> *launch_names;
static void launch_names_print(void) {
    std::vector<std::pair<unsigned long long, std::string>> v;
    for (auto &kv : *launch_names) v.push_back({kv.second, kv.first});
    std::sort(v.begin(), v.end(), [](const auto &a, const auto &b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    for (auto &e : v) fprintf(stderr, "emu stats: %10llu launches of %s\n", e.first, e.second.c_str());
}

void emu_launch(dim3 grid, dim3 block, size_t bytes, const std::function<void()> &f,
                const char *name) {
    static std::mutex launch_mu;   /* one launch at a time: the scheduler's state is global */
    std::lock_guard<std::mutex> hold(launch_mu);
    if (emu_stat_launch()) {
        if (!launch_names) {
            launch_names = new std::map<std::string, unsigned long long>;
            atexit(launch_names_print);
        }
        (*launch_names)[name ? name : "(unnamed)"]++;
    }
    /* what cudaLaunchKernel refuses (cudaErrorInvalidConfiguration): the
     * block's 1024 threads and its dimensions' own limits, the grid's */
    unsigned long long nt = (unsigned long long)block.x * block.y * block.z;
    if (nt == 0 || nt > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64 || grid.x == 0 ||
        grid.x > 0x7fffffffu || grid.y == 0 || grid.y > 65535 || grid.z == 0 || grid.z > 65535) {
        fprintf(stderr, "emu: invalid launch: grid (%u,%u,%u), block (%u,%u,%u)\n", grid.x,
                grid.y, grid.z, block.x, block.y, block.z);
        abort();
    }
    unsigned n = (unsigned)nt;
    /* above 48 KiB a kernel must opt in (cudaFuncSetAttribute, which
     * neither the kernels nor tests/emu have): the launch fails */
    if (bytes > 48 * 1024) {
        fprintf(stderr, "emu: %zu bytes of dynamic shared memory: over the 48 KiB a kernel "
                "gets without cudaFuncSetAttribute\n", bytes);
        abort();
    }
    /* garbage, as on a GPU (0xFF at each block's start, below), and a guard
     * after it: a block that writes past its dynamic shared memory (a fault
     * on a GPU, or another block's data) is reported when it ends */
    const size_t guard = 64;
    smem.assign(bytes + guard, 0xA5);
    auto check_guard = [&] {
        for (size_t i = bytes; i < bytes + guard; i++)
            if (smem[i] != 0xA5)
                emu_fail("the block wrote byte %zu past its %zu bytes of dynamic shared memory",
                         i - bytes, bytes);
    };
    gridDim = grid, blockDim = block, body = &f;
    /* the first block as fibers; when it never waited on another thread,
     * the others as plain calls, thread after thread (most kernels: ten
     * times faster) */
    synced = 0, direct = 0;
    int first = 1;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                blockIdx = {x, y, z};
                block_seq++;
                memset(smem.data(), 0xFF, bytes);   /* garbage: see emu_shared_poison */
                if (first || synced) {
                    run_block(n);
                    check_guard();
                    first = 0;
                    direct = !synced;
                    continue;
                }
                /* last to first in blocks of odd linear index, as run_block
                 * orders them: a kernel with no barrier at all that reads
                 * another thread's shared-memory write shows it too */
                const bool rev = (x + (unsigned long long)grid.x * (y + (unsigned long long)grid.y * z)) & 1;
                for (unsigned ii = 0; ii < n; ii++) {
                    const unsigned i = rev ? n - 1 - ii : ii;
                    threadIdx = {i % block.x, i / block.x % block.y, i / (block.x * block.y)};
                    f();
                }
                check_guard();
            }
    direct = 0;
    body = nullptr;
}
