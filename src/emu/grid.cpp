// The emulated device's grid executor: runs a kernel's grid on the host.
//
// Blocks run one after another in an order shuffled by TANDEM_EMU_SEED (and a
// per-launch counter). A block's threads are fibers that switch only where a
// GPU thread may wait for others: __syncthreads, __syncwarp and the warp
// shuffles. Each fiber runs until it waits or ends; when every live thread
// waits, the scheduler releases what can be released (a warp operation whose
// mask's lanes have all arrived, or the block barrier) and resumes the
// released threads in a new seeded order. A thread that never waits ends on
// the same stack the next one reuses, so barrier-free kernels cost one
// context switch per thread.
//
// Checkers (each a finding, src/emu/emu.h):
//   - shared memory: a per-byte shadow of the last writer and reader within
//     the current barrier interval (a race: two threads, one writing, no
//     barrier between), bytes written at least once in this block
//     (uninitialised reads), and extents (TANDEM_SHARED's checked views);
//     fresh shared memory is poisoned with 0xff bytes (NaN for floats);
//   - barriers: threads waiting at different __syncthreads, threads that
//     ended while others wait, waits that can never be released;
//   - warp operations: a mask naming a lane that ended or is absent, a lane
//     taking part without being in its own mask, lanes meeting at one shuffle
//     with different masks, a source lane outside the mask.
//
// The context switch is a few instructions of x86-64 assembly (callee-saved
// registers, MXCSR and the x87 control word); elsewhere ucontext. Fiber
// switches are announced to AddressSanitizer.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "emu/device.h"
#include "emu/emu.h"

#if defined(TANDEM_EMU_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#if defined(__x86_64__)
extern "C" void tandem_emu_switch(void** save_sp, void* new_sp);
extern "C" void tandem_emu_trampoline();
// tandem_emu_switch(save, next): saves the callee-saved state on the current
// stack, stores the stack pointer in *save and resumes the stack `next`.
// A new fiber's stack is laid out so that its first resumption "returns" into
// tandem_emu_trampoline, which calls r12(rbx).
asm(R"(
  .text
  .globl tandem_emu_switch
  .hidden tandem_emu_switch
  .type tandem_emu_switch,@function
tandem_emu_switch:
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
  .size tandem_emu_switch, .-tandem_emu_switch
  .globl tandem_emu_trampoline
  .hidden tandem_emu_trampoline
  .type tandem_emu_trampoline,@function
tandem_emu_trampoline:
  movq %rbx, %rdi
  callq *%r12
  ud2
  .size tandem_emu_trampoline, .-tandem_emu_trampoline
)");
#endif

namespace tandem {
namespace emu {
namespace {

constexpr size_t kSharedLimit = 48 * 1024;  // static __shared__ per block
#if defined(TANDEM_EMU_ASAN)
constexpr size_t kStackSize = 1024 * 1024;
#else
constexpr size_t kStackSize = 256 * 1024;
#endif
constexpr int kMaxFindingsPerGrid = 4;

// Thrown inside a fiber to abandon its block (after a finding that leaves no
// sensible way on); caught at the fiber's entry.
struct AbortBlock {};

// ---- Fibers ---------------------------------------------------------------------------

struct Fiber {
  char* stack_lo = nullptr;  // usable stack, above a guard page
  size_t size = 0;
  void* sp = nullptr;
#if !defined(__x86_64__)
  ucontext_t ctx;
#endif
  void* fake_stack = nullptr;  // ASan's
};

Fiber* new_fiber() {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* mem = mmap(nullptr, kStackSize + page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) {
    std::fprintf(stderr, "tandem emu: cannot map a fiber stack\n");
    std::abort();
  }
  mprotect(mem, page, PROT_NONE);  // overflow guard
  auto* f = new Fiber();
  f->stack_lo = static_cast<char*>(mem) + page;
  f->size = kStackSize;
  return f;
}

enum class Wait { kRunning, kBarrier, kWarp, kDone };

struct EmuThread {
  ThreadState st{};
  Fiber* fiber = nullptr;
  bool started = false;
  Wait wait = Wait::kRunning;
  const char* file = "";
  int line = 0;
  unsigned mask = 0;
  uint64_t value = 0;
  int src = 0;
  uint64_t result = 0;
};

struct SharedVar {
  const void* tag;
  size_t offset;
  size_t bytes;
  const char* name;
};

struct ByteShadow {
  uint64_t write_epoch = 0;
  uint64_t read_epoch = 0;
  uint64_t init_block = 0;  // serial of the block that last wrote it
  int16_t writer = -1;
  int16_t reader = -1;  // -2: several readers
};

// One block in flight on this host thread.
struct Block {
  const char* kernel = "";
  const std::function<void()>* body = nullptr;
  std::vector<EmuThread> threads;
  int nthreads = 0;
  bool aborted = false;
  uint64_t serial = 0;  // distinct for every block ever run
  uint64_t epoch = 0;   // barrier interval (distinct across blocks too)
  alignas(16) unsigned char shared[kSharedLimit];
  std::vector<ByteShadow> shadow = std::vector<ByteShadow>(kSharedLimit);
  std::vector<SharedVar> vars;
  size_t shared_used = 0;
  int findings = 0;  // in this grid
  std::mt19937_64 rng;
};

struct HostThreadState {
  Block* block = nullptr;
  EmuThread* thread = nullptr;
  void* sched_sp = nullptr;
#if !defined(__x86_64__)
  ucontext_t sched_ctx;
#endif
  const void* sched_stack_bottom = nullptr;
  size_t sched_stack_size = 0;
  std::vector<Fiber*> free_fibers;
  HostThreadState() = default;
  HostThreadState(const HostThreadState&) = delete;
  HostThreadState& operator=(const HostThreadState&) = delete;
  ~HostThreadState() {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    for (Fiber* f : free_fibers) {
      munmap(f->stack_lo - page, f->size + page);
      delete f;
    }
  }
};

// initial-exec: kernels read it at every threadIdx/blockIdx, and the default
// TLS model of a shared library calls __tls_get_addr each time.
__attribute__((tls_model("initial-exec"))) thread_local HostThreadState t_host;

std::atomic<uint64_t> g_block_serial{1};
std::atomic<uint64_t> g_grids{0}, g_blocks{0}, g_threads{0}, g_barriers{0};
std::atomic<uint64_t> g_launch_serial{0};

Fiber* take_fiber() {
  auto& pool = t_host.free_fibers;
  if (pool.empty()) return new_fiber();
  Fiber* f = pool.back();
  pool.pop_back();
  return f;
}

void fiber_main(void* arg);

#if !defined(__x86_64__)
void fiber_main_uc(unsigned lo, unsigned hi) {
  fiber_main(reinterpret_cast<void*>((static_cast<uintptr_t>(hi) << 32) | lo));
}
#endif

// Prepares `f` to start fiber_main(t) at its first resumption.
void init_fiber(Fiber* f, EmuThread* t) {
#if defined(TANDEM_EMU_ASAN)
  // A reused stack still carries the redzones of the frames of the fiber that
  // ran on it last.
  ASAN_UNPOISON_MEMORY_REGION(f->stack_lo, f->size);
#endif
#if defined(__x86_64__)
  auto top = reinterpret_cast<uintptr_t>(f->stack_lo + f->size) & ~uintptr_t{15};
  auto* sp = reinterpret_cast<uint64_t*>(top - 64 - 16);
  const uint32_t mxcsr = 0x1f80;
  const uint16_t fpucw = 0x037f;
  std::memcpy(reinterpret_cast<char*>(sp), &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(sp) + 4, &fpucw, 2);
  sp[1] = 0;                                        // r15
  sp[2] = 0;                                        // r14
  sp[3] = 0;                                        // r13
  sp[4] = reinterpret_cast<uint64_t>(&fiber_main);  // r12: the entry
  sp[5] = reinterpret_cast<uint64_t>(t);            // rbx: its argument
  sp[6] = 0;                                        // rbp
  sp[7] = reinterpret_cast<uint64_t>(&tandem_emu_trampoline);
  f->sp = sp;
#else
  getcontext(&f->ctx);
  f->ctx.uc_stack.ss_sp = f->stack_lo;
  f->ctx.uc_stack.ss_size = f->size;
  f->ctx.uc_link = nullptr;
  const auto p = reinterpret_cast<uintptr_t>(t);
  makecontext(&f->ctx, reinterpret_cast<void (*)()>(&fiber_main_uc), 2,
              static_cast<unsigned>(p & 0xffffffffu), static_cast<unsigned>(p >> 32));
#endif
}

// Scheduler -> fiber.
void resume(EmuThread* t) {
  Fiber* f = t->fiber;
  t_host.thread = t;
#if defined(TANDEM_EMU_ASAN)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, f->stack_lo, f->size);
#endif
#if defined(__x86_64__)
  tandem_emu_switch(&t_host.sched_sp, f->sp);
#else
  swapcontext(&t_host.sched_ctx, &f->ctx);
#endif
#if defined(TANDEM_EMU_ASAN)
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
  t_host.thread = nullptr;
}

// Fiber -> scheduler; `dying`: the fiber never resumes.
void yield_to_scheduler(EmuThread* t, bool dying) {
  Fiber* f = t->fiber;
#if defined(TANDEM_EMU_ASAN)
  __sanitizer_start_switch_fiber(dying ? nullptr : &f->fake_stack, t_host.sched_stack_bottom,
                                 t_host.sched_stack_size);
#else
  (void)dying;
#endif
#if defined(__x86_64__)
  tandem_emu_switch(&f->sp, t_host.sched_sp);
#else
  swapcontext(&f->ctx, &t_host.sched_ctx);
#endif
#if defined(TANDEM_EMU_ASAN)
  __sanitizer_finish_switch_fiber(f->fake_stack, &t_host.sched_stack_bottom,
                                  &t_host.sched_stack_size);
#endif
}

std::string thread_name(const Block& b, const EmuThread& t) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "block (%u,%u,%u) thread (%u,%u,%u)", t.st.block_idx.x,
                t.st.block_idx.y, t.st.block_idx.z, t.st.thread_idx.x, t.st.thread_idx.y,
                t.st.thread_idx.z);
  (void)b;
  return buf;
}

void block_finding(Block& b, FindingKind kind, const std::string& what) {
  if (b.findings >= kMaxFindingsPerGrid) return;
  ++b.findings;
  std::string msg = std::string("kernel ") + b.kernel + ": " + what;
  if (b.findings == kMaxFindingsPerGrid) msg += " (further findings in this grid not reported)";
  report(kind, msg);
}

void fiber_main(void* arg) {
  auto* t = static_cast<EmuThread*>(arg);
#if defined(TANDEM_EMU_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &t_host.sched_stack_bottom, &t_host.sched_stack_size);
#endif
  Block& b = *t_host.block;
  try {
    (*b.body)();
  } catch (const AbortBlock&) {
    b.aborted = true;
  } catch (const std::exception& e) {
    block_finding(b, FindingKind::kOther, thread_name(b, *t) + " threw: " + e.what());
    b.aborted = true;
  }
  t->wait = Wait::kDone;
  yield_to_scheduler(t, /*dying=*/true);
  std::abort();  // never resumed
}

// Waits (from inside a fiber) until the scheduler releases this thread.
void wait_here(Wait kind, const char* file, int line) {
  EmuThread* t = t_host.thread;
  if (t == nullptr) {
    std::fprintf(stderr, "tandem emu: a barrier or warp operation outside a kernel\n");
    std::abort();
  }
  t->wait = kind;
  t->file = file;
  t->line = line;
  yield_to_scheduler(t, /*dying=*/false);
  if (t_host.block->aborted) throw AbortBlock{};
}

std::string site(const char* file, int line) {
  const char* slash = std::strrchr(file, '/');
  return std::string(slash != nullptr ? slash + 1 : file) + ":" + std::to_string(line);
}

bool same_site(const EmuThread& a, const EmuThread& b) {
  return a.line == b.line && (a.file == b.file || std::strcmp(a.file, b.file) == 0);
}

// Releases the warp operations of warp `w` whose lanes have all arrived.
// Returns whether any thread was released (appended to `released`).
bool resolve_warp(Block& b, int w, std::vector<int>& released) {
  const int first = w * 32;
  const int last = std::min(first + 32, b.nthreads);
  bool progress = false;
  for (int i = first; i < last; ++i) {
    EmuThread& lead = b.threads[i];
    if (lead.wait != Wait::kWarp) continue;
    // The lanes at lead's site.
    unsigned at_site = 0;
    for (int j = first; j < last; ++j) {
      const EmuThread& o = b.threads[j];
      if (o.wait == Wait::kWarp && same_site(o, lead)) at_site |= 1u << (j - first);
    }
    const unsigned mask = lead.mask;
    bool ready = true;
    for (int lane = 0; lane < 32; ++lane) {
      if (!(mask & (1u << lane))) continue;
      if (first + lane >= last) {
        block_finding(b, FindingKind::kShuffleMask,
                      thread_name(b, lead) + ": warp operation at " + site(lead.file, lead.line) +
                          " names lane " + std::to_string(lane) +
                          ", which the block does not have");
        continue;
      }
      const EmuThread& o = b.threads[first + lane];
      if (o.wait == Wait::kDone) {
        block_finding(b, FindingKind::kShuffleMask,
                      thread_name(b, lead) + ": warp operation at " + site(lead.file, lead.line) +
                          " names lane " + std::to_string(lane) + ", which has exited");
      } else if (!(at_site & (1u << lane))) {
        ready = false;  // still elsewhere; may arrive later
      }
    }
    if (!ready) continue;
    for (int lane = 0; lane < 32; ++lane) {
      if (!(at_site & (1u << lane))) continue;
      EmuThread& o = b.threads[first + lane];
      if (o.mask != mask) {
        block_finding(b, FindingKind::kShuffleMask,
                      "lanes meet at the warp operation at " + site(o.file, o.line) +
                          " with different masks");
      }
      if (!(mask & (1u << lane))) {
        block_finding(b, FindingKind::kShuffleMask,
                      thread_name(b, o) + " takes part in the warp operation at " +
                          site(o.file, o.line) + " but its mask leaves it out");
      }
    }
    for (int lane = 0; lane < 32; ++lane) {
      if (!(at_site & (1u << lane))) continue;
      EmuThread& o = b.threads[first + lane];
      const int src = o.src - first;
      if (src >= 0 && src < 32 && (at_site & mask & (1u << src))) {
        o.result = b.threads[first + src].value;
      } else {
        if (src != lane) {
          block_finding(b, FindingKind::kShuffleMask,
                        thread_name(b, o) + " reads lane " + std::to_string(src) +
                            " outside the mask at " + site(o.file, o.line));
        }
        o.result = o.value;
      }
      o.wait = Wait::kRunning;
      released.push_back(first + lane);
      progress = true;
    }
  }
  return progress;
}

// Releases the block barrier when every live thread waits at one. Returns
// whether it did.
bool resolve_barrier(Block& b, std::vector<int>& released) {
  const EmuThread* lead = nullptr;
  int exited = 0;
  for (const EmuThread& t : b.threads) {
    if (t.wait == Wait::kDone) {
      ++exited;
    } else if (t.wait != Wait::kBarrier) {
      return false;
    } else if (lead == nullptr) {
      lead = &t;
    }
  }
  if (lead == nullptr) return false;
  for (const EmuThread& t : b.threads) {
    if (t.wait == Wait::kBarrier && !same_site(t, *lead)) {
      block_finding(b, FindingKind::kDivergentBarrier,
                    "threads of one block wait at different barriers: " + thread_name(b, *lead) +
                        " at " + site(lead->file, lead->line) + ", " + thread_name(b, t) + " at " +
                        site(t.file, t.line));
      break;
    }
  }
  if (exited > 0) {
    block_finding(b, FindingKind::kDivergentBarrier,
                  std::to_string(exited) + " thread(s) of the block exited while " +
                      thread_name(b, *lead) + " waits at __syncthreads at " +
                      site(lead->file, lead->line));
  }
  ++b.epoch;
  g_barriers.fetch_add(1, std::memory_order_relaxed);
  for (int i = 0; i < b.nthreads; ++i) {
    if (b.threads[i].wait == Wait::kBarrier) {
      b.threads[i].wait = Wait::kRunning;
      released.push_back(i);
    }
  }
  return true;
}

std::string describe_waits(const Block& b) {
  std::string s;
  int shown = 0;
  for (const EmuThread& t : b.threads) {
    if (t.wait == Wait::kDone || t.wait == Wait::kRunning) continue;
    if (shown++ == 4) {
      s += ", ...";
      break;
    }
    if (!s.empty()) s += ", ";
    s += thread_name(b, t) + (t.wait == Wait::kBarrier ? " at __syncthreads " : " at warp op ") +
         site(t.file, t.line);
  }
  return s;
}

void shuffle_in_place(std::vector<int>& v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(rng() % i);
    std::swap(v[i - 1], v[j]);
  }
}

void run_block(Block& b) {
  b.aborted = false;
  b.serial = g_block_serial.fetch_add(1, std::memory_order_relaxed);
  b.epoch = b.serial << 20;
  b.vars.clear();
  b.shared_used = 0;
  std::vector<int> runnable(static_cast<size_t>(b.nthreads));
  for (int i = 0; i < b.nthreads; ++i) runnable[static_cast<size_t>(i)] = i;
  shuffle_in_place(runnable, b.rng);
  std::vector<int> released;
  int live = b.nthreads;
  while (live > 0) {
    for (int i : runnable) {
      EmuThread& t = b.threads[static_cast<size_t>(i)];
      if (!t.started) {
        t.started = true;
        t.fiber = take_fiber();
        init_fiber(t.fiber, &t);
      }
      t.wait = Wait::kRunning;
      resume(&t);
      if (t.wait == Wait::kDone) {
        t_host.free_fibers.push_back(t.fiber);
        t.fiber = nullptr;
        --live;
      }
      if (b.aborted) break;
    }
    runnable.clear();
    if (b.aborted || live == 0) break;
    bool progress = false;
    for (int w = 0; w * 32 < b.nthreads; ++w) progress |= resolve_warp(b, w, runnable);
    if (!progress) progress = resolve_barrier(b, runnable);
    if (!progress) {
      block_finding(
          b, FindingKind::kDivergentBarrier,
          "the block can never go on (divergent barrier or warp operation): " + describe_waits(b));
      b.aborted = true;
      break;
    }
    shuffle_in_place(runnable, b.rng);
  }
  // Fibers of an abandoned block are never resumed; their stacks are reused.
  for (EmuThread& t : b.threads) {
    if (t.fiber != nullptr) t_host.free_fibers.push_back(t.fiber);
    t.fiber = nullptr;
  }
}

void run_grid(const char* kernel, dim3 grid, dim3 block, const std::function<void()>& body) {
  // One Block per host thread, reused: its shadow is large and epochs and
  // serials keep it valid across blocks without clearing.
  thread_local std::unique_ptr<Block> cached;
  if (!cached) cached = std::make_unique<Block>();
  Block* b = cached.get();
  b->findings = 0;
  b->kernel = kernel;
  b->body = &body;
  b->nthreads = static_cast<int>(block.x * block.y * block.z);
  b->threads.resize(static_cast<size_t>(b->nthreads));
  b->rng.seed(seed() * 0x9e3779b97f4a7c15ull +
              g_launch_serial.fetch_add(1, std::memory_order_relaxed));
  const uint64_t nblocks = uint64_t{grid.x} * grid.y * grid.z;
  // The block order: a seeded permutation (a seeded rotation past 2^24 blocks).
  std::vector<uint32_t> order;
  uint64_t rotation = 0;
  if (nblocks <= (uint64_t{1} << 24)) {
    order.resize(nblocks);
    for (uint64_t i = 0; i < nblocks; ++i) order[i] = static_cast<uint32_t>(i);
    for (uint64_t i = nblocks; i > 1; --i) std::swap(order[i - 1], order[b->rng() % i]);
  } else {
    rotation = b->rng() % nblocks;
  }
  Block* saved = t_host.block;
  t_host.block = b;
  for (uint64_t k = 0; k < nblocks; ++k) {
    const uint64_t id = order.empty() ? (k + rotation) % nblocks : order[k];
    const uint3 bidx{static_cast<unsigned>(id % grid.x),
                     static_cast<unsigned>((id / grid.x) % grid.y),
                     static_cast<unsigned>(id / (uint64_t{grid.x} * grid.y))};
    for (int i = 0; i < b->nthreads; ++i) {
      EmuThread& t = b->threads[static_cast<size_t>(i)];
      t = EmuThread{};
      const auto u = static_cast<unsigned>(i);
      t.st.thread_idx = uint3{u % block.x, (u / block.x) % block.y, u / (block.x * block.y)};
      t.st.block_idx = bidx;
      t.st.block_dim = block;
      t.st.grid_dim = grid;
      t.st.linear = i;
    }
    run_block(*b);
    if (b->aborted) break;  // as a faulting grid stops on a GPU
  }
  t_host.block = saved;
  g_grids.fetch_add(1, std::memory_order_relaxed);
  g_blocks.fetch_add(nblocks, std::memory_order_relaxed);
  g_threads.fetch_add(nblocks * static_cast<uint64_t>(b->nthreads), std::memory_order_relaxed);
}

Block& current_block() {
  Block* b = t_host.block;
  if (b == nullptr || t_host.thread == nullptr) {
    std::fprintf(stderr, "tandem emu: device code called outside a kernel\n");
    std::abort();
  }
  return *b;
}

}  // namespace

// ---- What kernels call ------------------------------------------------------------------

const ThreadState& this_thread() {
  if (t_host.thread == nullptr) {
    std::fprintf(stderr, "tandem emu: threadIdx/blockIdx read outside a kernel\n");
    std::abort();
  }
  return t_host.thread->st;
}

void syncthreads(const char* file, int line) { wait_here(Wait::kBarrier, file, line); }

void syncwarp(unsigned mask, const char* file, int line) {
  EmuThread* t = t_host.thread;
  if (t == nullptr) std::abort();
  t->mask = mask;
  t->value = 0;
  t->src = t->st.linear;
  wait_here(Wait::kWarp, file, line);
}

uint64_t shuffle_dword(unsigned mask, uint64_t value, int src_lane, const char* file, int line) {
  EmuThread* t = t_host.thread;
  if (t == nullptr) std::abort();
  t->mask = mask;
  t->value = value;
  t->src = (t->st.linear / 32) * 32 + src_lane;
  wait_here(Wait::kWarp, file, line);
  return t->result;
}

uint32_t shuffle_word(unsigned mask, uint32_t value, int src_lane, const char* file, int line) {
  return static_cast<uint32_t>(shuffle_dword(mask, value, src_lane, file, line));
}

void* block_shared_storage(const void* tag, size_t bytes, const char* name) {
  Block& b = current_block();
  for (const SharedVar& v : b.vars) {
    if (v.tag == tag) return b.shared + v.offset;
  }
  const size_t offset = (b.shared_used + 15) & ~size_t{15};
  if (offset + bytes > kSharedLimit) {
    block_finding(b, FindingKind::kLaunchConfig,
                  std::string("static shared memory (") + name + ") needs " +
                      std::to_string(offset + bytes) + " bytes, more than the 48 KiB a block has");
    throw AbortBlock{};
  }
  std::memset(b.shared + offset, 0xff, bytes);  // poison: NaN for floats
  b.vars.push_back(SharedVar{tag, offset, bytes, name});
  b.shared_used = offset + bytes;
  return b.shared + offset;
}

namespace {
std::string shared_var_at(const Block& b, size_t off) {
  for (const SharedVar& v : b.vars) {
    if (off >= v.offset && off < v.offset + v.bytes) {
      return std::string(v.name) + "+" + std::to_string(off - v.offset);
    }
  }
  return "offset " + std::to_string(off);
}

size_t shared_offset(const Block& b, const void* p, size_t n) {
  const auto* c = static_cast<const unsigned char*>(p);
  if (c < b.shared || c + n > b.shared + kSharedLimit) {
    std::fprintf(stderr, "tandem emu: a shared-memory view points outside the block's memory\n");
    std::abort();
  }
  return static_cast<size_t>(c - b.shared);
}
}  // namespace

void shared_read(const void* p, size_t n) {
  Block& b = current_block();
  const EmuThread& t = *t_host.thread;
  const size_t off = shared_offset(b, p, n);
  const auto me = static_cast<int16_t>(t.st.linear);
  for (size_t i = off; i < off + n; ++i) {
    ByteShadow& s = b.shadow[i];
    if (s.init_block != b.serial) {
      block_finding(b, FindingKind::kSharedUninitialised,
                    thread_name(b, t) + " reads shared memory " + shared_var_at(b, i) +
                        " that no thread of the block has written");
      return;
    }
    if (s.write_epoch == b.epoch && s.writer != me) {
      block_finding(b, FindingKind::kSharedRace,
                    "shared-memory race on " + shared_var_at(b, i) + ": " + thread_name(b, t) +
                        " reads what thread " + std::to_string(s.writer) +
                        " wrote with no __syncthreads between");
      return;
    }
    if (s.read_epoch != b.epoch) {
      s.read_epoch = b.epoch;
      s.reader = me;
    } else if (s.reader != me) {
      s.reader = -2;
    }
  }
}

void shared_write(const void* p, size_t n) {
  Block& b = current_block();
  const EmuThread& t = *t_host.thread;
  const size_t off = shared_offset(b, p, n);
  const auto me = static_cast<int16_t>(t.st.linear);
  for (size_t i = off; i < off + n; ++i) {
    ByteShadow& s = b.shadow[i];
    const bool other_wrote = s.write_epoch == b.epoch && s.writer != me;
    const bool other_read = s.read_epoch == b.epoch && s.reader != me;
    if (other_wrote || other_read) {
      block_finding(b, FindingKind::kSharedRace,
                    "shared-memory race on " + shared_var_at(b, i) + ": " + thread_name(b, t) +
                        " writes what thread " +
                        (other_wrote ? std::to_string(s.writer) + " wrote"
                                     : (s.reader == -2 ? std::string("several threads")
                                                       : std::to_string(s.reader)) +
                                           " read") +
                        " with no __syncthreads between");
      return;
    }
    s.write_epoch = b.epoch;
    s.writer = me;
    s.init_block = b.serial;
  }
}

void shared_out_of_bounds(const char* name, int64_t index, int64_t extent) {
  Block& b = current_block();
  block_finding(b, FindingKind::kSharedOutOfBounds,
                thread_name(b, *t_host.thread) + " indexes shared array " + name + " at " +
                    std::to_string(index) + ", outside [0, " + std::to_string(extent) + ")");
  throw AbortBlock{};
}

// ---- Launch -------------------------------------------------------------------------------

namespace {

// A kernel's name as TANDEM_LAUNCH spells it ("k<T, Fn>", "ns::k") reduced to
// the name TANDEM_KERNEL_BOUNDS records ("k").
std::string base_kernel_name(const char* name) {
  std::string s(name);
  s = s.substr(0, s.find('<'));
  while (!s.empty() && s.back() == ' ') s.pop_back();
  const size_t colon = s.rfind("::");
  if (colon != std::string::npos) s = s.substr(colon + 2);
  return s;
}

std::mutex& bounds_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::pair<std::string, std::string>, int>& bounds_table() {
  static std::map<std::pair<std::string, std::string>, int> table;
  return table;
}

}  // namespace

bool register_launch_bounds(const char* file, const char* kernel_name, int max_threads) {
  std::lock_guard<std::mutex> lock(bounds_mutex());
  bounds_table()[{file, base_kernel_name(kernel_name)}] = max_threads;
  return true;
}

int launch_bounds_of(const char* file, const char* kernel_name) {
  if (file == nullptr) return 0;
  std::lock_guard<std::mutex> lock(bounds_mutex());
  const auto it = bounds_table().find({file, base_kernel_name(kernel_name)});
  return it == bounds_table().end() ? 0 : it->second;
}

cudaError_t launch_grid(const char* kernel_name, const char* file, dim3 grid, dim3 block,
                        size_t shared_bytes, cudaStream_t stream,
                        std::function<void()> thread_body) {
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  const int bound = launch_bounds_of(file, kernel_name);
  cudaError_t err = cudaSuccess;
  if (threads == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64 ||
      grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 ||
      grid.z > 65535) {
    err = cudaErrorInvalidConfiguration;
  } else if (shared_bytes > kSharedLimit) {
    err = cudaErrorInvalidValue;
  } else if (bound > 0 && threads > static_cast<uint64_t>(bound)) {
    err = cudaErrorLaunchOutOfResources;
  }
  if (err != cudaSuccess) {
    set_last_error(err);
    return err;
  }
  auto body = std::make_shared<std::function<void()>>(std::move(thread_body));
  enqueue(stream, kernel_name,
          [kernel_name, grid, block, body]() { run_grid(kernel_name, grid, block, *body); });
  return cudaSuccess;
}

std::string current_kernel_thread() {
  if (t_host.block == nullptr || t_host.thread == nullptr) return "";
  return std::string("kernel ") + t_host.block->kernel + ", " +
         thread_name(*t_host.block, *t_host.thread);
}

GridStats grid_stats() {
  GridStats s;
  s.grids = g_grids.load();
  s.blocks = g_blocks.load();
  s.threads = g_threads.load();
  s.barriers = g_barriers.load();
  return s;
}

}  // namespace emu
}  // namespace tandem
