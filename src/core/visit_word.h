// visit_word: the dtype-word dispatch of both backends. Ops that only move
// elements (permute, index_select, gather) need one instantiation per element
// size, not per dtype: f(W{}) is called with W the unsigned word of `bytes`
// bytes (1, 4 or 8: the sizes tandem's dtypes have). Host code only; the CPU
// loops and the CUDA launchers call it (cpu::util::visit_word and
// cuda::visit_word are this function).
#pragma once

#include <cstddef>
#include <cstdint>

#include "tandem/error.h"

namespace tandem {

template <typename F>
inline void visit_word(size_t bytes, const char* op, const F& f) {
  switch (bytes) {
    case 1:
      f(uint8_t{});
      return;
    case 4:
      f(uint32_t{});
      return;
    case 8:
      f(uint64_t{});
      return;
    default:
      TANDEM_FAIL(op, ": unsupported element size ", bytes);
  }
}

}  // namespace tandem
