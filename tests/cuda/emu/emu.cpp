/* emu.cpp — the runtime of the CUDA emulator (see include/cuda_runtime.h for what it checks).
 *
 * Threads of a block are fibers on one OS thread, switched by a few lines of x86-64 assembly
 * (callee-saved registers, MXCSR and the x87 control word), each with its own stack and a
 * guard page. A block runs until every live thread waits at a barrier or has returned; then
 * the barriers that are complete are released (a warp barrier when every lane of its mask
 * waits at one, the block barrier when every live thread does). Anything else is a
 * deadlock (e.g. __syncthreads in a branch not all threads take) and stops the program.
 * CXEMU_ORDER=rev runs the threads of a block, and the blocks of a grid, last to first.
 *
 * Device memory: one anonymous mapping per cudaMalloc, the allocation placed against a guard
 * page at its end (and one before), filled with 0xFF bytes, PROT_NONE except while queued
 * work (kernels, copies) runs. A SIGSEGV handler names what was touched and by whom.
 * Streams: each has its own in-order queue; the synchronising calls drain them all, always
 * running the head of some stream that may run (its cudaStreamWaitEvent satisfied). Which one:
 * CXEMU_STREAMS=issue (default) in issue order; =first the earliest-created stream runs ahead as
 * far as its waits allow; =last the latest-created one does. A missing "A waits for B" shows
 * when A is preferred. CXEMU_ORDER=rev implies first unless CXEMU_STREAMS says otherwise. The
 * legacy default stream is ordered with everything (as with blocking streams). CXEMU_TRACE=1
 * prints each queued item as it runs ([s<stream creation number> #<issue number>]). */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <deque>
#include <map>
#include <string>
#include <mutex>
#include <vector>

#include "cuda_runtime.h"
#include "cxemu_ptx.h"

struct CUstream_st {
  long long seq; /* creation order (the legacy stream, NULL, counts as 0) */
};
struct CUevent_st {
  double t;
  long long rec_id;  /* queue id of the latest record issued, 0: never recorded */
  long long done_id; /* the latest record that ran */
};

#if !defined(__x86_64__)
#error "the CUDA emulator's fiber switch is written for x86-64"
#endif

namespace cxemu {
uint3 g_thread_idx, g_block_idx;
dim3 g_block_dim, g_grid_dim;
}

using namespace cxemu;

/* ---- fibers ------------------------------------------------------------------------------ */
/* cxemu_switch(save, to): saves the callee-saved state on the current stack, stores the stack
 * pointer in *save, and resumes the context whose stack pointer is `to`. */
extern "C" void cxemu_switch(void **save, void *to);
asm(R"(
  .text
  .globl cxemu_switch
  .type cxemu_switch, @function
cxemu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cxemu_switch, .-cxemu_switch
  .section .note.GNU-stack,"",@progbits
  .text
)");

namespace {

enum { F_READY, F_BLOCK, F_WARP, F_DONE };
struct fiber {
  void *sp;
  int state;
  unsigned wmask; /* mask of the warp barrier it waits at */
  uint3 tid;
};

constexpr int MAX_THREADS = 1024;
constexpr size_t STACK_BYTES = 256 * 1024;
size_t g_page;
char *g_stacks; /* MAX_THREADS stacks, each with a guard page at its low end */
fiber g_fib[MAX_THREADS];
unsigned long long g_slots[MAX_THREADS];
unsigned long long g_wide[MAX_THREADS][WIDE_SLOTS]; /* warp_wide_slots: mma fragments */
void *g_sched_sp;
int g_cur = -1, g_nth;
const std::function<void()> *g_body;
std::vector<unsigned char> g_dyn;
const char *g_kernel;
bool g_in_kernel;
int g_order_rev = -1;

uint32_t g_mxcsr;
uint16_t g_fpcw;

void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void die(const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  fprintf(stderr, "cuda-emu: %s\n", buf);
  fflush(stderr);
  abort();
}

const char *where(char *buf, size_t n) {
  if (g_in_kernel && g_cur >= 0)
    snprintf(buf, n, "kernel %s, block (%u,%u,%u), thread (%u,%u,%u)", g_kernel, g_block_idx.x, g_block_idx.y,
             g_block_idx.z, g_fib[g_cur].tid.x, g_fib[g_cur].tid.y, g_fib[g_cur].tid.z);
  else if (g_in_kernel)
    snprintf(buf, n, "%s (device work)", g_kernel ? g_kernel : "queued work");
  else
    snprintf(buf, n, "host code");
  return buf;
}

void fiber_entry() {
  (*g_body)();
  g_fib[g_cur].state = F_DONE;
  cxemu_switch(&g_fib[g_cur].sp, g_sched_sp);
  __builtin_unreachable();
}

void stacks_init() {
  if (g_stacks) return;
  g_page = (size_t)sysconf(_SC_PAGESIZE);
  const size_t total = (size_t)MAX_THREADS * STACK_BYTES;
  void *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) die("cannot map %zu bytes of fiber stacks", total);
  g_stacks = (char *)m;
  for (int i = 0; i < MAX_THREADS; i++) mprotect(g_stacks + (size_t)i * STACK_BYTES, g_page, PROT_NONE);
  uint32_t mx;
  uint16_t cw;
  asm volatile("stmxcsr %0" : "=m"(mx));
  asm volatile("fnstcw %0" : "=m"(cw));
  g_mxcsr = mx;
  g_fpcw = cw;
  const char *o = getenv("CXEMU_ORDER");
  g_order_rev = o && !strcmp(o, "rev");
}

void fiber_init(int i) {
  uintptr_t top = (uintptr_t)(g_stacks + (size_t)(i + 1) * STACK_BYTES) & ~(uintptr_t)15;
  uint64_t *s = (uint64_t *)top;
  *--s = 0;                        /* fake return address of fiber_entry: entry sees rsp % 16 == 8 */
  *--s = (uint64_t)(uintptr_t)&fiber_entry; /* popped by cxemu_switch's ret */
  for (int r = 0; r < 6; r++) *--s = 0; /* rbp rbx r12 r13 r14 r15 */
  *--s = (uint64_t)g_mxcsr | ((uint64_t)g_fpcw << 32);
  g_fib[i].sp = s;
  g_fib[i].state = F_READY;
  g_fib[i].wmask = 0;
}

void yield_to_scheduler(int state) {
  if (!g_in_kernel || g_cur < 0) die("a barrier or warp intrinsic was called outside a kernel");
  g_fib[g_cur].state = state;
  const int me = g_cur;
  cxemu_switch(&g_fib[me].sp, g_sched_sp);
  /* resumed: the scheduler has set g_cur and g_thread_idx */
}

/* Releases complete barriers; returns whether anything was released. */
bool resolve(int nth) {
  bool released = false;
  for (int w0 = 0; w0 < nth; w0 += 32) {
    const int wn = std::min(32, nth - w0);
    unsigned waiting = 0, uni = 0, done = 0;
    for (int l = 0; l < wn; l++) {
      const fiber &f = g_fib[w0 + l];
      if (f.state == F_WARP) waiting |= 1u << l, uni |= f.wmask;
      if (f.state == F_DONE) done |= 1u << l;
    }
    if (!waiting) continue;
    const unsigned exists = wn == 32 ? 0xffffffffu : ((1u << wn) - 1u);
    if (uni & ~exists) {
      char w[256];
      g_cur = w0 + __builtin_ctz(waiting);
      die("%s: warp sync mask 0x%08x names lanes that do not exist (block of %d threads)", where(w, sizeof w), uni,
          nth);
    }
    if (uni & done) {
      char w[256];
      g_cur = w0 + __builtin_ctz(waiting);
      die("%s: warp sync mask 0x%08x includes lanes that have already returned (0x%08x)", where(w, sizeof w), uni,
          uni & done);
    }
    if ((uni & waiting) == uni) {
      for (int l = 0; l < wn; l++)
        if ((uni >> l) & 1u) g_fib[w0 + l].state = F_READY;
      released = true;
    }
  }
  if (released) return true;
  int live = 0, at_block = 0;
  for (int t = 0; t < nth; t++) {
    live += g_fib[t].state != F_DONE;
    at_block += g_fib[t].state == F_BLOCK;
  }
  if (live && at_block == live) {
    for (int t = 0; t < nth; t++)
      if (g_fib[t].state == F_BLOCK) g_fib[t].state = F_READY;
    return true;
  }
  return false;
}

/* A thread's asynchronous operations in commit groups, as cp.async and wgmma have them: those
 * issued since the last commit, and the committed groups not yet waited for (oldest first).
 * They are performed only by that thread's wait, as late as the hardware may perform them. */
template <class Op>
struct op_groups {
  std::vector<Op> open;
  std::vector<std::vector<Op>> groups;
  void clear() {
    open.clear();
    groups.clear();
  }
  bool pending() const { return !open.empty() || !groups.empty(); }
  void commit() {
    groups.push_back(std::move(open));
    open.clear();
  }
  /* performs the groups older than the newest `prior` */
  template <class F>
  void wait(size_t prior, F perform) {
    while (groups.size() > prior) {
      for (const Op &o : groups.front()) perform(o);
      groups.erase(groups.begin());
    }
  }
};

/* pipeline primitives (cuda_pipeline.h): the copies */
struct pipe_copy_op {
  void *dst;
  const void *src;
  size_t n, zfill;
};
op_groups<pipe_copy_op> g_pipe[MAX_THREADS];

/* wgmma (cxemu_ptx.h): the MMAs, so the shared-memory operands are read at the wait and the
 * accumulator registers change only then */
struct wg_op {
  float *d;
  int n;
  unsigned long long da, db;
  int ta, tb, bf16;
};
op_groups<wg_op> g_wg[MAX_THREADS];

void run_block(int nth) {
  for (int t = 0; t < nth; t++) {
    fiber_init(t);
    g_pipe[t].clear(); /* copies never waited for by the last block: gone with its shared memory */
    g_wg[t].clear();
  }
  for (;;) {
    for (int k = 0; k < nth; k++) {
      const int t = g_order_rev ? nth - 1 - k : k;
      if (g_fib[t].state != F_READY) continue;
      g_cur = t;
      g_thread_idx = g_fib[t].tid;
      cxemu_switch(&g_sched_sp, g_fib[t].sp);
    }
    g_cur = -1;
    int done = 0;
    for (int t = 0; t < nth; t++) done += g_fib[t].state == F_DONE;
    if (done == nth) {
      for (int t = 0; t < nth; t++)
        if (g_wg[t].pending())
          die("kernel %s, block (%u,%u,%u), thread %d: returned with wgmma operations not waited for "
              "(wgmma.commit_group + wgmma.wait_group before the accumulators are used)",
              g_kernel, g_block_idx.x, g_block_idx.y, g_block_idx.z, t);
      return;
    }
    if (!resolve(nth)) {
      int at_block = 0, at_warp = 0;
      for (int t = 0; t < nth; t++) at_block += g_fib[t].state == F_BLOCK, at_warp += g_fib[t].state == F_WARP;
      die("kernel %s, block (%u,%u,%u): deadlock: %d threads returned, %d wait at __syncthreads, %d at a warp "
          "barrier (a barrier inside a branch that not all threads take?)",
          g_kernel, g_block_idx.x, g_block_idx.y, g_block_idx.z, done, at_block, at_warp);
    }
  }
}

/* ---- device memory ---------------------------------------------------------------------- */
struct alloc {
  uintptr_t user;
  size_t size;
  char *map;
  size_t maplen;
  char *data; /* the readable/writable pages */
  size_t datalen;
  bool pinned;
};
std::map<uintptr_t, alloc> g_allocs; /* by user address */
std::recursive_mutex g_mu;           /* OpenMP host threads may call in */
int g_protect = -1;
bool g_access; /* device memory currently accessible */

bool protect_on() {
  if (g_protect < 0) {
    const char *p = getenv("CXEMU_PROTECT");
    g_protect = !(p && !strcmp(p, "0"));
  }
  return g_protect;
}

void device_access(bool on) {
  if (g_access == on) return;
  g_access = on;
  if (!protect_on()) return;
  for (auto &kv : g_allocs)
    if (!kv.second.pinned) mprotect(kv.second.data, kv.second.datalen, on ? PROT_READ | PROT_WRITE : PROT_NONE);
}

const alloc *find_alloc(const void *p, bool with_guards) {
  const uintptr_t a = (uintptr_t)p;
  for (auto it = g_allocs.upper_bound(a); it != g_allocs.begin();) {
    --it;
    const alloc &al = it->second;
    if (with_guards) {
      if (a >= (uintptr_t)al.map && a < (uintptr_t)al.map + al.maplen) return &al;
    } else if (a >= al.user && a <= al.user + al.size) {
      return &al;
    }
    break;
  }
  if (with_guards) /* a guard page before the allocation sorts after the previous one */
    for (auto &kv : g_allocs)
      if (a >= (uintptr_t)kv.second.map && a < (uintptr_t)kv.second.map + kv.second.maplen) return &kv.second;
  return nullptr;
}

/* ---- the queues ------------------------------------------------------------------------ */
struct qitem {
  long long id;              /* issue order */
  std::function<void()> f;   /* the work (empty for a wait) */
  cudaEvent_t wait_ev;       /* a cudaStreamWaitEvent: runnable once wait_ev's record wait_id ran */
  long long wait_id;
};
std::map<cudaStream_t, std::deque<qitem>> g_streams; /* pending work per stream */
size_t g_pending;
long long g_next_id = 1;
long long g_run_id; /* the queue id of the item running (event records mark themselves done) */
cudaError_t g_last = cudaSuccess;
int g_device_count = -1;
std::map<const void *, int> g_max_dyn; /* cudaFuncAttributeMaxDynamicSharedMemorySize */

/* Whether the head h of stream s may run now: its wait is satisfied, and the legacy stream's
 * work and everyone else's stay in issue order relative to each other. */
bool runnable(cudaStream_t s, const qitem &h) {
  if (h.wait_ev && h.wait_ev->done_id < h.wait_id) return false;
  for (auto &kv : g_streams) {
    if (kv.second.empty() || kv.first == s) continue;
    if ((s == nullptr || kv.first == nullptr) && kv.second.front().id < h.id) return false;
  }
  return true;
}

int g_stream_mode = -1; /* CXEMU_STREAMS: 0 issue order, 1 first-created ahead, 2 last-created ahead */

void flush() {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  if (!g_pending) return;
  if (g_stream_mode < 0) {
    const char *m = getenv("CXEMU_STREAMS");
    g_stream_mode = m && !strcmp(m, "first") ? 1 : m && !strcmp(m, "last") ? 2 : m && !strcmp(m, "issue") ? 0
                                                                                : -1;
    if (g_stream_mode < 0) {
      const char *o = getenv("CXEMU_ORDER");
      g_stream_mode = o && !strcmp(o, "rev") ? 1 : 0;
    }
  }
  device_access(true);
  g_in_kernel = true;
  while (g_pending) {
    std::deque<qitem> *pick = nullptr;
    long long best = 0, pick_seq = 0;
    for (auto &kv : g_streams) {
      if (kv.second.empty() || !runnable(kv.first, kv.second.front())) continue;
      const long long seq = kv.first ? kv.first->seq : 0;
      const long long key = g_stream_mode == 0 ? kv.second.front().id : g_stream_mode == 1 ? seq : -seq;
      if (!pick || key < best) pick = &kv.second, best = key, pick_seq = seq;
    }
    if (!pick) {
      fprintf(stderr, "cuda-emu: every stream waits on an event that no pending work records: deadlock\n");
      abort();
    }
    qitem it = std::move(pick->front());
    g_run_id = it.id;
    static const bool trace = getenv("CXEMU_TRACE") != nullptr;
    if (trace) fprintf(stderr, "[s%lld #%lld%s]\n", pick_seq, it.id, it.wait_ev ? " wait" : "");
    pick->pop_front();
    g_pending--;
    if (it.f) it.f();
  }
  g_in_kernel = false;
  g_kernel = nullptr;
  device_access(false);
}

cudaError_t set_err(cudaError_t e) {
  if (e != cudaSuccess) g_last = e;
  return e;
}

/* stream capture */
struct graph_ops {
  std::vector<std::function<void()>> ops;
};
cudaStream_t g_cap_stream;
bool g_capturing, g_cap_invalid;
graph_ops *g_cap;

cudaError_t capture_violation(const char *what) {
  fprintf(stderr, "cuda-emu: %s during stream capture: not allowed, the capture is invalidated\n", what);
  g_cap_invalid = true;
  return cudaErrorStreamCaptureUnsupported;
}

/* Queues f on stream s (or records it into the graph being captured); *id: its queue id. */
cudaError_t enqueue_on(cudaStream_t s, std::function<void()> f, cudaEvent_t wait_ev = nullptr, long long wait_id = 0,
                       long long *id = nullptr) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  if (g_capturing) {
    if (s != g_cap_stream) return capture_violation("work queued on another stream than the capturing one");
    if (wait_ev) return capture_violation("cudaStreamWaitEvent");
    g_cap->ops.push_back(std::move(f));
    return cudaSuccess;
  }
  const long long i = g_next_id++;
  if (id) *id = i;
  g_streams[s].push_back(qitem{i, std::move(f), wait_ev, wait_id});
  g_pending++;
  return cudaSuccess;
}
/* A synchronising call: an error while capturing. */
bool sync_forbidden(const char *what) {
  if (!g_capturing) return false;
  capture_violation(what);
  return true;
}

double now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* CXEMU_PROFILE=1: emulated time per kernel, printed at exit (where the emulator's time goes,
 * not how fast the GPU would be). */
std::map<std::string, std::pair<double, long>> g_prof;
void profile_print() {
  std::vector<std::pair<double, std::string>> v;
  double total = 0;
  for (auto &kv : g_prof) v.push_back({kv.second.first, kv.first}), total += kv.second.first;
  std::sort(v.rbegin(), v.rend());
  fprintf(stderr, "cuda-emu profile: %.0f ms in kernels\n", total);
  for (auto &x : v) fprintf(stderr, "  %10.0f ms %8ld launches  %s\n", x.first, g_prof[x.second].second, x.second.c_str());
}
void profile_add(const char *name, double ms) {
  if (g_prof.empty()) atexit(profile_print);
  auto &p = g_prof[name];
  p.first += ms;
  p.second++;
}

/* ---- SIGSEGV: say what was touched ----------------------------------------------------- */
char g_altstack[1 << 16];
void on_segv(int sig, siginfo_t *si, void *) {
  char w[256], what[512];
  const uintptr_t a = (uintptr_t)si->si_addr;
  const alloc *al = find_alloc(si->si_addr, true);
  if (g_stacks && a >= (uintptr_t)g_stacks && a < (uintptr_t)g_stacks + (size_t)MAX_THREADS * STACK_BYTES)
    snprintf(what, sizeof what, "fiber stack overflow (a thread uses more than %zu KB of stack)", STACK_BYTES / 1024);
  else if (al && a >= al->user && a < al->user + al->size)
    snprintf(what, sizeof what,
             "device memory (allocation of %zu bytes at %p) touched while device memory is inaccessible: host code "
             "dereferenced a device pointer",
             al->size, (void *)al->user);
  else if (al && a >= al->user + al->size)
    snprintf(what, sizeof what, "%zu bytes past the end of the device allocation of %zu bytes at %p",
             (size_t)(a - al->user - al->size), al->size, (void *)al->user);
  else if (al)
    snprintf(what, sizeof what, "%zu bytes before the device allocation of %zu bytes at %p", (size_t)(al->user - a),
             al->size, (void *)al->user);
  else
    snprintf(what, sizeof what, "not device memory");
  fprintf(stderr, "cuda-emu: invalid memory access at %p in %s: %s\n", si->si_addr, where(w, sizeof w), what);
  fflush(stderr);
  signal(sig, SIG_DFL);
  raise(sig);
}

void install_handler() {
  static bool done;
  if (done) return;
  done = true;
  stack_t ss;
  ss.ss_sp = g_altstack;
  ss.ss_size = sizeof g_altstack;
  ss.ss_flags = 0;
  sigaltstack(&ss, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigaction(SIGSEGV, &sa, NULL);
  sigaction(SIGBUS, &sa, NULL);
}


/* Checks [p, p+n) for a copy: kind 1 device, 0 host. */
bool range_ok(const void *p, size_t n, bool device, const char *call, const char *side) {
  if (n == 0) return true;
  const alloc *al = find_alloc(p, false);
  const bool is_dev = al && !al->pinned;
  if (device) {
    if (!is_dev) {
      fprintf(stderr, "cuda-emu: %s: %s %p is not device memory\n", call, side, p);
      return false;
    }
    if ((uintptr_t)p + n > al->user + al->size) {
      fprintf(stderr, "cuda-emu: %s: %s range of %zu bytes at %p runs %zu bytes past its allocation of %zu bytes\n",
              call, side, n, p, (size_t)((uintptr_t)p + n - al->user - al->size), al->size);
      return false;
    }
  } else if (is_dev) {
    fprintf(stderr, "cuda-emu: %s: %s %p is device memory, the copy kind says host\n", call, side, p);
    return false;
  }
  return true;
}

} /* namespace */

/* ---- cxemu:: functions used by the headers ------------------------------------------------ */
namespace cxemu {
void barrier_block() { yield_to_scheduler(F_BLOCK); }
void barrier_warp(unsigned mask) {
  if (!g_in_kernel || g_cur < 0) die("a warp intrinsic was called outside a kernel");
  const unsigned lane = (unsigned)(g_cur % 32);
  if (!((mask >> lane) & 1u)) {
    char w[256];
    die("%s: warp sync mask 0x%08x does not include the calling lane %u", where(w, sizeof w), mask, lane);
  }
  g_fib[g_cur].wmask = mask;
  yield_to_scheduler(F_WARP);
}
int lane_id() { return g_cur % 32; }
int warp_leader() {
  const int w0 = g_cur - g_cur % 32;
  for (int t = w0; t < g_cur; t++)
    if (g_fib[t].state != F_DONE) return 0;
  return 1;
}
unsigned long long *warp_slots() { return g_slots + (g_cur - g_cur % 32); }
unsigned long long *warp_wide_slots() { return g_wide[g_cur - g_cur % 32]; }
void *dyn_smem() { return g_dyn.data(); }

void pipe_copy(void *dst, const void *src, size_t size, size_t zfill) {
  if (!g_in_kernel || g_cur < 0) die("__pipeline_memcpy_async outside a kernel");
  if ((size != 4 && size != 8 && size != 16) || zfill > size)
    device_fail("__pipeline_memcpy_async of %zu bytes with %zu zero-filled (4, 8 or 16, zfill <= size)", size, zfill);
  if (((uintptr_t)dst % size) || ((uintptr_t)src % size))
    device_fail("__pipeline_memcpy_async: %p <- %p not aligned to its size %zu", dst, src, size);
  g_pipe[g_cur].open.push_back(pipe_copy_op{dst, src, size - zfill, zfill});
}

void pipe_commit() {
  if (!g_in_kernel || g_cur < 0) die("__pipeline_commit outside a kernel");
  g_pipe[g_cur].commit();
}

void pipe_wait_prior(size_t prior) {
  if (!g_in_kernel || g_cur < 0) die("__pipeline_wait_prior outside a kernel");
  g_pipe[g_cur].wait(prior, [](const pipe_copy_op &c) {
    if (c.n) memcpy(c.dst, c.src, c.n);
    if (c.zfill) memset((char *)c.dst + c.n, 0, c.zfill);
  });
}
unsigned smem_addr(const void *p) {
  const uintptr_t a = (uintptr_t)p, b = (uintptr_t)g_dyn.data();
  if (a < b || a > b + g_dyn.size()) device_fail("shared address of %p: not in this launch's dynamic shared memory", p);
  return (unsigned)(a - b);
}

namespace {
/* Element (i, k) of a wgmma operand in shared memory (i: row of A or column of B, k < 16) by
 * the PTX ISA's matrix descriptor and canonical layouts (section "Shared Memory Matrix
 * Layout"), 128-byte swizzle only: K-major ((8,m),(T,2k)):((8T,SBO),(1,T)), MN-major
 * ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO)) with T = 8 16-bit elements (16 bytes), then
 * Swizzle<3,4,3> on the byte address (bits 4-6 ^= bits 7-9). */
unsigned short wg_elem(unsigned long long desc, bool mn_major, int i, int k) {
  const unsigned start = (unsigned)(desc & 0x3fffu) << 4, lbo = (unsigned)((desc >> 16) & 0x3fffu) << 4,
                 sbo = (unsigned)((desc >> 32) & 0x3fffu) << 4;
  const unsigned base_off = (unsigned)((desc >> 49) & 7u), mode = (unsigned)(desc >> 62);
  if (mode != 1 || base_off != 0)
    device_fail("wgmma descriptor %016llx: only the 128-byte swizzle with base offset 0 is emulated", desc);
  const unsigned off = mn_major ? (unsigned)(i % 8) * 2 + (unsigned)((i / 8) % 8) * 16 + (unsigned)(i / 64) * lbo +
                                      (unsigned)(k % 8) * 128 + (unsigned)(k / 8) * sbo
                                : (unsigned)(i % 8) * 128 + (unsigned)(i / 8) * sbo + (unsigned)(k / 8) * 16 +
                                      (unsigned)(k % 8) * 2;
  unsigned a = start + off;
  a ^= ((a >> 7) & 7u) << 4;
  if ((size_t)a + 2 > g_dyn.size())
    device_fail("wgmma operand element at shared byte %u: past the %zu bytes of dynamic shared memory", a, g_dyn.size());
  unsigned short v;
  memcpy(&v, g_dyn.data() + a, 2);
  return v;
}

float wg_val(unsigned short u, bool bf16) {
  return bf16 ? half_bits_to_f<__nv_bfloat16>(u) : half_bits_to_f<__half>(u);
}

/* The calling thread's part of D (m64nNk16, f32): warp w of the warpgroup holds rows 16w..+15;
 * register i of lane l: row 16w + l/4 + 8((i/2)%2), column 8(i/4) + 2(l%4) + i%2. */
void wg_run(const wg_op &o) {
  const int t = g_cur % 128, w = t / 32, l = t % 32;
  float a[2][16], b[64][16]; /* this thread's 2 rows of A and N/4 columns of B */
  for (int h = 0; h < 2; h++)
    for (int k = 0; k < 16; k++) a[h][k] = wg_val(wg_elem(o.da, o.ta != 0, 16 * w + l / 4 + 8 * h, k), o.bf16);
  for (int j = 0; j < o.n / 4; j++)
    for (int k = 0; k < 16; k++) b[j][k] = wg_val(wg_elem(o.db, o.tb != 0, 8 * (j / 2) + 2 * (l % 4) + j % 2, k), o.bf16);
  for (int i = 0; i < o.n / 2; i++) {
    /* row 16w + l/4 + 8((i/2)%2), column 8(i/4) + 2(l%4) + i%2 */
    const float *ar = a[(i / 2) % 2], *bc = b[2 * (i / 4) + i % 2];
    float acc = o.d[i];
    for (int k = 0; k < 16; k++) acc += ar[k] * bc[k];
    o.d[i] = acc;
  }
}
} /* namespace */

void wgmma_issue(float *d, int n, unsigned long long da, unsigned long long db, int ta, int tb, int bf16) {
  if (!g_in_kernel || g_cur < 0) die("wgmma outside a kernel");
  if (g_block_dim.x % 128 || g_block_dim.y != 1 || g_block_dim.z != 1)
    device_fail("wgmma needs whole warpgroups in a 1-D block (blockDim %u x %u x %u)", g_block_dim.x, g_block_dim.y,
                g_block_dim.z);
  if (n % 8 || n < 8 || n > 256) device_fail("wgmma: N = %d", n);
  g_wg[g_cur].open.push_back(wg_op{d, n, da, db, ta, tb, bf16});
}

void wgmma_commit() {
  if (!g_in_kernel || g_cur < 0) die("wgmma.commit_group outside a kernel");
  g_wg[g_cur].commit();
}

void wgmma_wait(int prior) {
  if (!g_in_kernel || g_cur < 0) die("wgmma.wait_group outside a kernel");
  g_wg[g_cur].wait((size_t)prior, wg_run);
}

void device_fail(const char *fmt, ...) {
  char msg[512], w[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  die("%s: %s", where(w, sizeof w), msg);
}

int check_device_pointer(const void *p, char *why, size_t n) {
  if (!p) return 0;
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  const alloc *al = find_alloc(p, false);
  if (al && !al->pinned) return 0;
  if (al)
    snprintf(why, n, "%p is page-locked host memory (cudaMallocHost), not device memory", p);
  else
    snprintf(why, n, "%p is host memory, not device memory", p);
  return -1;
}

void launch_arg_error(const char *kernel, int arg, const char *why) {
  die("launch of %s: argument %d: %s", kernel, arg, why);
}

void submit_kernel(const char *name, const void *fn, const launch_cfg &c, std::function<void()> body) {
  stacks_init();
  install_handler();
  const dim3 g = c.grid, b = c.block;
  const unsigned long long nth = (unsigned long long)b.x * b.y * b.z;
  const char *bad = nullptr;
  if (!g.x || !g.y || !g.z || !b.x || !b.y || !b.z) bad = "a zero grid or block dimension";
  else if (nth > 1024 || b.x > 1024 || b.y > 1024 || b.z > 64) bad = "more than 1024 threads per block";
  else if (g.x > 2147483647u || g.y > 65535u || g.z > 65535u) bad = "grid dimension over the limit (y, z <= 65535)";
  else if (c.smem > 48 * 1024) {
    auto it = g_max_dyn.find(fn);
    if (it == g_max_dyn.end() || (size_t)it->second < c.smem)
      bad = "more than 48 KB of dynamic shared memory without cudaFuncAttributeMaxDynamicSharedMemorySize";
  }
  if (bad) {
    fprintf(stderr, "cuda-emu: launch of %s <<<(%u,%u,%u), (%u,%u,%u), %zu>>>: %s\n", name, g.x, g.y, g.z, b.x, b.y,
            b.z, c.smem, bad);
    set_err(cudaErrorInvalidConfiguration);
    return;
  }
  const size_t smem = c.smem;
  static const bool prof = getenv("CXEMU_PROFILE") != nullptr;
  const cudaError_t qe = enqueue_on(c.stream, [=]() {
    g_kernel = name;
    g_grid_dim = g;
    g_block_dim = b;
    const int n = (int)nth;
    g_nth = n;
    for (int t = 0; t < n; t++) g_fib[t].tid = uint3{(unsigned)(t % b.x), (unsigned)(t / b.x % b.y), (unsigned)(t / (b.x * b.y))};
    g_dyn.assign(smem + 16, 0xFF); /* uninitialised shared memory */
    g_body = &body;
    const double t0 = prof ? now_ms() : 0.0;
    /* CXEMU_ORDER=rev also runs the blocks last to first (blocks may run in any order) */
    for (unsigned zi = 0; zi < g.z; zi++)
      for (unsigned yi = 0; yi < g.y; yi++)
        for (unsigned xi = 0; xi < g.x; xi++) {
          const unsigned x = g_order_rev ? g.x - 1 - xi : xi, y = g_order_rev ? g.y - 1 - yi : yi,
                         z = g_order_rev ? g.z - 1 - zi : zi;
          g_block_idx = uint3{x, y, z};
          if (smem) memset(g_dyn.data(), 0xFF, smem);
          run_block(n);
        }
    g_body = nullptr;
    if (prof) profile_add(name, now_ms() - t0);
  });
  if (qe != cudaSuccess) set_err(qe);
}
} /* namespace cxemu */

/* ---- the runtime API ------------------------------------------------------------------- */
extern "C" {
cudaError_t cudaGetDeviceCount(int *n) {
  if (g_device_count < 0) {
    const char *e = getenv("CXEMU_DEVICES");
    g_device_count = e ? atoi(e) : 1;
  }
  *n = g_device_count;
  return g_device_count > 0 ? cudaSuccess : set_err(cudaErrorNoDevice);
}
cudaError_t cudaSetDevice(int d) {
  int n;
  cudaGetDeviceCount(&n);
  return d >= 0 && d < n ? cudaSuccess : set_err(cudaErrorInvalidDevice);
}
cudaError_t cudaGetDevice(int *d) {
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
  if (d != 0) return set_err(cudaErrorInvalidDevice);
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "CUDA emulator on the CPU (tests/cuda/emu)");
  p->totalGlobalMem = (size_t)16 << 30;
  p->sharedMemPerBlock = 48 * 1024;
  p->sharedMemPerBlockOptin = 227 * 1024;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647;
  p->maxGridSize[1] = p->maxGridSize[2] = 65535;
  p->major = 9;
  p->minor = 0;
  /* 1 by default; CXEMU_SMS=132 makes the kernels' launch heuristics (tile width, split-K)
   * choose as on an H100 */
  const char *sms = getenv("CXEMU_SMS");
  p->multiProcessorCount = sms && atoi(sms) > 0 ? atoi(sms) : 1;
  p->maxThreadsPerMultiProcessor = 2048;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr attr, int d) {
  cudaDeviceProp p;
  if (cudaGetDeviceProperties(&p, d) != cudaSuccess) return set_err(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *v = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = (int)p.sharedMemPerBlock; break;
    case cudaDevAttrWarpSize: *v = p.warpSize; break;
    case cudaDevAttrMultiProcessorCount: *v = p.multiProcessorCount; break;
    case cudaDevAttrComputeCapabilityMajor: *v = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *v = p.minor; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = (int)p.sharedMemPerBlockOptin; break;
    default: return set_err(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
  if (sync_forbidden("cudaDeviceSynchronize")) return set_err(cudaErrorStreamCaptureUnsupported);
  flush();
  return cudaSuccess;
}
cudaError_t cudaGetLastError(void) {
  const cudaError_t e = g_last;
  g_last = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return g_last; }
const char *cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
    default: return "cudaErrorUnknown";
  }
}
const char *cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    default: return cudaGetErrorName(e);
  }
}

cudaError_t cudaMalloc(void **out, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  install_handler();
  if (!g_page) g_page = (size_t)sysconf(_SC_PAGESIZE);
  const size_t sz = (bytes + 255) & ~(size_t)255;
  const size_t datalen = (sz + g_page - 1) / g_page * g_page;
  const size_t maplen = datalen + 2 * g_page;
  void *m = mmap(NULL, maplen, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) {
    *out = NULL;
    return set_err(cudaErrorMemoryAllocation);
  }
  alloc al;
  al.map = (char *)m;
  al.maplen = maplen;
  al.data = al.map + g_page;
  al.datalen = datalen;
  al.user = (uintptr_t)(al.data + datalen - sz); /* 256-byte aligned, flush with the guard page */
  al.size = bytes;
  al.pinned = false;
  mprotect(al.data, datalen, PROT_READ | PROT_WRITE);
  memset(al.data, 0xFF, datalen);
  if (protect_on() && !g_access) mprotect(al.data, datalen, PROT_NONE);
  g_allocs[al.user] = al;
  *out = (void *)al.user;
  return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
  if (!p) return cudaSuccess;
  if (sync_forbidden("cudaFree")) return set_err(cudaErrorStreamCaptureUnsupported);
  flush(); /* cudaFree synchronises */
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  auto it = g_allocs.find((uintptr_t)p);
  if (it == g_allocs.end() || it->second.pinned) {
    fprintf(stderr, "cuda-emu: cudaFree(%p): not a pointer returned by cudaMalloc\n", p);
    return set_err(cudaErrorInvalidValue);
  }
  munmap(it->second.map, it->second.maplen);
  g_allocs.erase(it);
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void **out, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  void *p = NULL;
  if (posix_memalign(&p, 4096, bytes ? bytes : 1)) {
    *out = NULL;
    return set_err(cudaErrorMemoryAllocation);
  }
  memset(p, 0xFF, bytes);
  alloc al;
  al.map = al.data = (char *)p;
  al.maplen = al.datalen = bytes ? bytes : 1;
  al.user = (uintptr_t)p;
  al.size = bytes;
  al.pinned = true;
  g_allocs[al.user] = al;
  *out = p;
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void **out, size_t bytes, unsigned flags) {
  (void)flags;
  return cudaMallocHost(out, bytes);
}
cudaError_t cudaFreeHost(void *p) {
  if (!p) return cudaSuccess;
  flush();
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  auto it = g_allocs.find((uintptr_t)p);
  if (it == g_allocs.end() || !it->second.pinned) {
    fprintf(stderr, "cuda-emu: cudaFreeHost(%p): not a pointer returned by cudaMallocHost\n", p);
    return set_err(cudaErrorInvalidValue);
  }
  free(p);
  g_allocs.erase(it);
  return cudaSuccess;
}
/* a 16 GiB device: what the live device allocations leave free */
cudaError_t cudaMemGetInfo(size_t *f, size_t *t) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  size_t used = 0;
  for (auto &kv : g_allocs)
    if (!kv.second.pinned) used += kv.second.size;
  *t = (size_t)16 << 30;
  *f = used < *t ? *t - used : 0;
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t s) {
  (void)s;
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  const bool dd = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool sd = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind == cudaMemcpyDefault || kind == cudaMemcpyHostToHost) {
    fprintf(stderr, "cuda-emu: cudaMemcpyAsync: copy kind %d is not used by ctxdiff and not emulated\n", (int)kind);
    return set_err(cudaErrorInvalidMemcpyDirection);
  }
  if (!range_ok(dst, n, dd, "cudaMemcpyAsync", "destination") || !range_ok(src, n, sd, "cudaMemcpyAsync", "source"))
    return set_err(cudaErrorInvalidValue);
  if (n == 0) return cudaSuccess;
  const alloc *sa = find_alloc(src, false), *da = find_alloc(dst, false);
  if (g_capturing && ((kind == cudaMemcpyHostToDevice && !(sa && sa->pinned)) ||
                      (kind == cudaMemcpyDeviceToHost && !(da && da->pinned))))
    return set_err(capture_violation("cudaMemcpyAsync with pageable host memory"));
  if (g_capturing) return set_err(enqueue_on(s, [=]() { memcpy(dst, src, n); }));
  if (kind == cudaMemcpyHostToDevice && !(sa && sa->pinned)) {
    /* pageable source: the runtime stages it before returning */
    auto copy = std::make_shared<std::vector<unsigned char>>((const unsigned char *)src, (const unsigned char *)src + n);
    return set_err(enqueue_on(s, [=]() { memcpy(dst, copy->data(), n); }));
  }
  if (kind == cudaMemcpyDeviceToHost && !(da && da->pinned)) {
    /* pageable destination: synchronous */
    const cudaError_t e = set_err(enqueue_on(s, [=]() { memcpy(dst, src, n); }));
    flush();
    return e;
  }
  return set_err(enqueue_on(s, [=]() { memcpy(dst, src, n); }));
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind) {
  if (sync_forbidden("cudaMemcpy")) return set_err(cudaErrorStreamCaptureImplicit);
  const cudaError_t e = cudaMemcpyAsync(dst, src, n, kind, 0);
  flush();
  return e;
}
cudaError_t cudaMemsetAsync(void *dst, int v, size_t n, cudaStream_t s) {
  (void)s;
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  if (!range_ok(dst, n, true, "cudaMemsetAsync", "destination")) return set_err(cudaErrorInvalidValue);
  return set_err(enqueue_on(s, [=]() { memset(dst, v, n); }));
}
cudaError_t cudaMemset(void *dst, int v, size_t n) {
  if (sync_forbidden("cudaMemset")) return set_err(cudaErrorStreamCaptureImplicit);
  const cudaError_t e = cudaMemsetAsync(dst, v, n, 0);
  flush();
  return e;
}

cudaError_t cudaStreamCreate(cudaStream_t *s) {
  static long long seq = 0;
  *s = new CUstream_st{++seq};
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
  (void)flags;
  return cudaStreamCreate(s);
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  flush();
  {
    std::lock_guard<std::recursive_mutex> lk(g_mu);
    g_streams.erase(s);
  }
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  (void)s;
  if (sync_forbidden("cudaStreamSynchronize")) return set_err(cudaErrorStreamCaptureUnsupported);
  flush();
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) {
  *e = new CUevent_st{0.0, 0, 0};
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags) {
  (void)flags;
  return cudaEventCreate(e);
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  long long id = 0;
  const cudaError_t r = enqueue_on(s, [=]() {
    e->t = now_ms();
    if (g_run_id > e->done_id) e->done_id = g_run_id; /* this record ran */
  }, nullptr, 0, &id);
  if (id) e->rec_id = id; /* 0 inside a capture: waits on captured records are not emulated */
  return set_err(r);
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  (void)e;
  if (sync_forbidden("cudaEventSynchronize")) return set_err(cudaErrorStreamCaptureUnsupported);
  flush();
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
  *ms = (float)(b->t - a->t);
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags) {
  (void)flags;
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  if (!e) return set_err(cudaErrorInvalidValue);
  if (!e->rec_id) return cudaSuccess; /* never recorded: nothing to wait for */
  return set_err(enqueue_on(s, nullptr, e, e->rec_id));
}
struct CUgraph_st {
  graph_ops g;
};
struct CUgraphExec_st {
  graph_ops g;
};
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
  (void)mode;
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  if (!s) {
    fprintf(stderr, "cuda-emu: cudaStreamBeginCapture: the legacy default stream cannot be captured\n");
    return set_err(cudaErrorStreamCaptureUnsupported);
  }
  if (g_capturing) return set_err(cudaErrorIllegalState);
  flush(); /* work queued before the capture is not part of it */
  g_capturing = true;
  g_cap_invalid = false;
  g_cap_stream = s;
  g_cap = new graph_ops();
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *out) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  *out = nullptr;
  if (!g_capturing || s != g_cap_stream) return set_err(cudaErrorIllegalState);
  g_capturing = false;
  g_cap_stream = nullptr;
  graph_ops *ops = g_cap;
  g_cap = nullptr;
  if (g_cap_invalid) {
    delete ops;
    return set_err(cudaErrorStreamCaptureInvalidated);
  }
  *out = new CUgraph_st{std::move(*ops)};
  delete ops;
  return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *st) {
  *st = g_capturing && s == g_cap_stream ? (g_cap_invalid ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive)
                                         : cudaStreamCaptureStatusNone;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *x, cudaGraph_t g, unsigned long long flags) {
  (void)flags;
  if (!g) return set_err(cudaErrorInvalidValue);
  *x = new CUgraphExec_st{g->g};
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t x, cudaStream_t s) {
  if (!x) return set_err(cudaErrorInvalidValue);
  for (auto &f : x->g.ops) {
    const cudaError_t e = enqueue_on(s, f);
    if (e != cudaSuccess) return set_err(e);
  }
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t x) {
  delete x;
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete g;
  return cudaSuccess;
}
cudaError_t cxemu_func_set_attribute(const void *fn, cudaFuncAttribute attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || value > 227 * 1024) return set_err(cudaErrorInvalidValue);
    g_max_dyn[fn] = value;
  }
  return cudaSuccess;
}
} /* extern "C" */
