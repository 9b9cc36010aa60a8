// Checkpoints in the safetensors format (https://github.com/huggingface/safetensors):
// an 8-byte little-endian header length, a JSON header (dtype, shape and
// data_offsets of every tensor, plus a string -> string "__metadata__" map),
// then the raw little-endian data. PyTorch's `safetensors` package reads what
// we write, and we read what it writes (F32, F64, I32, I64, U8 tensors).
//
// Writes are atomic: the file is written to a temporary file in the same
// directory, fsync'ed and renamed over `path`, so a crash mid-write leaves the
// previous checkpoint intact. Reads validate everything before use (header at
// most 100 MB, JSON, dtypes, shapes, offsets inside the file, tensors tiling
// the data) and throw tandem::Error naming the file and the violation.
//
//   tandem::save(*net, "net.safetensors");          // like torch::save
//   tandem::load(*net, "net.safetensors");          // checks before it copies
//   tandem::save_checkpoint("ckpt.safetensors", *net, &adam, &sched, {{"epoch", "3"}});
//   tandem::load_checkpoint("ckpt.safetensors", *net, &adam, &sched);
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tandem/nn/module.h"
#include "tandem/optim.h"
#include "tandem/optim/lr_scheduler.h"
#include "tandem/tensor.h"

namespace tandem {

// Named tensors in a chosen order (the same type as nn::StateDict).
using TensorList = std::vector<std::pair<std::string, Tensor>>;
// The header's "__metadata__": free-form strings (safetensors allows nothing else).
using Metadata = std::map<std::string, std::string>;

// What load_safetensors returns: tensors ordered by name, and the metadata.
struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;
  Metadata metadata;
};

// Largest header load_safetensors accepts, in bytes.
constexpr uint64_t kSafetensorsMaxHeaderBytes = 100000000;

// Writes `tensors` (any device; CUDA tensors are copied to the host one at a
// time) and `metadata` to `path`, atomically. Throws for an empty, duplicate
// or "__metadata__" name, an undefined tensor, a name or string that is not
// UTF-8, and any I/O error (the previous file at `path` is then untouched).
void save_safetensors(const std::string& path, const TensorList& tensors,
                      const Metadata& metadata = {});

// Reads and validates a safetensors file; the tensors are made on `device`.
SafetensorsFile load_safetensors(const std::string& path, Device device = Device(kCPU));

// The parameters and buffers of `module` (named_parameters() then
// named_buffers(): tied tensors once) and `metadata`, written atomically.
void save(const nn::Module& module, const std::string& path, const Metadata& metadata = {});
// Loads a file written by save() (or by PyTorch with the same names) into
// `module`: every parameter and buffer must be in the file with the same
// dtype and shape, and the file may hold no other tensor (tensors of an
// optimizer saved by save_checkpoint are skipped). Every mismatch is reported
// in one tandem::Error, and nothing is changed unless all match. Values are
// copied into the module's tensors (on their devices). Returns the metadata.
Metadata load(nn::Module& module, const std::string& path);

template <typename Impl>
void save(const nn::ModuleHolder<Impl>& module, const std::string& path,
          const Metadata& metadata = {}) {
  save(*module, path, metadata);
}
template <typename Impl>
Metadata load(const nn::ModuleHolder<Impl>& module, const std::string& path) {
  return load(*module, path);
}

// ---- Optimizer and scheduler state in a checkpoint ----------------------------
//
// An optimizer's state dict becomes tensors "<prefix><group>.<param>.<buffer>"
// (e.g. "optim.0.3.exp_avg") and one metadata entry "<prefix>state", a JSON
// object with the optimizer's name, every group's options and every
// parameter's step count and buffer names. A scheduler's state is the JSON
// metadata entry "lr_scheduler". Doubles are written with the shortest text
// that reads back bit-exactly, so training resumes bit-exactly.
constexpr const char* kOptimizerPrefix = "optim.";
constexpr const char* kSchedulerKey = "lr_scheduler";

// Appends the state to `tensors` and `metadata`. Throws for options of an
// optimizer that is not built in (SGD, Adam, AdamW, RMSprop, Adagrad) or a
// non-finite option value.
void flatten_optimizer_state(const optim::OptimizerState& state, TensorList& tensors,
                             Metadata& metadata, const std::string& prefix = kOptimizerPrefix);
// The inverse: checks the JSON and that every tensor under `prefix` belongs to
// it; the result is for Optimizer::load_state_dict, which checks it against
// the optimizer.
optim::OptimizerState unflatten_optimizer_state(const SafetensorsFile& file,
                                                const std::string& prefix = kOptimizerPrefix);
void flatten_scheduler_state(const optim::LRSchedulerState& state, Metadata& metadata,
                             const std::string& key = kSchedulerKey);
optim::LRSchedulerState unflatten_scheduler_state(const Metadata& metadata,
                                                  const std::string& key = kSchedulerKey);

// Model, optimizer (optional) and scheduler (optional) in one file, written
// atomically; `metadata` may not use the keys reserved for the optimizer and
// scheduler. A model tensor whose name starts with the optimizer prefix is an
// error.
void save_checkpoint(const std::string& path, const nn::Module& module,
                     const optim::Optimizer* optimizer = nullptr,
                     const optim::LRScheduler* scheduler = nullptr, const Metadata& metadata = {});
// Restores all three: every check (module names, dtypes and shapes; the
// optimizer's state against the optimizer; the scheduler's) happens before
// anything changes, and when one fails nothing is changed. Returns the metadata.
Metadata load_checkpoint(const std::string& path, nn::Module& module,
                         optim::Optimizer* optimizer = nullptr,
                         optim::LRScheduler* scheduler = nullptr);

}  // namespace tandem
