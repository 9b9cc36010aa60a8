// One rank of a tandem::dist test (tests/test_dist.cpp spawns several of
// these; RANK, WORLD_SIZE and TANDEM_RENDEZVOUS come from the environment).
//
//   tandem_dist_worker collectives      all-reduce/broadcast/all-gather/barrier values
//   tandem_dist_worker equiv MODEL B    DataParallel at batch B against one model at
//                                       batch WORLD*B (MODEL: mlp or bn), every step
//   tandem_dist_worker die              rank 1 exits; the others must fail naming it
//   tandem_dist_worker overlap          bucket all-reduce start vs backward end
//
// Prints "OK ..." lines on success; any failure is an exception: the message
// on stderr and exit status 1.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "tandem/tandem.h"

using namespace tandem;

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void expect(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("check failed: " + what);
}

void collectives(dist::ProcessGroup& pg) {
  const int r = pg.rank(), w = pg.size();
  // all_reduce: rank r contributes (r + 1) * x_i with x_i = i + 0.5.
  Tensor t = arange(7.0, TensorOptions(kFloat32)) + 0.5;
  t.mul_(static_cast<double>(r + 1));
  pg.all_reduce(t);
  const double factor = w * (w + 1) / 2.0;
  for (int64_t i = 0; i < 7; ++i)
    expect(std::fabs(t[i].item<double>() - factor * (i + 0.5)) < 1e-4, "all_reduce sum");
  Tensor m = full({3}, static_cast<double>(r), TensorOptions(kInt64));
  pg.all_reduce(m, dist::ReduceOp::Max);
  expect(m[2].item<int64_t>() == w - 1, "all_reduce max");
  Tensor b = full({5}, r == 1 ? 42.0 : -1.0, TensorOptions(kFloat64));
  pg.broadcast(b, 1);
  expect(b[4].item<double>() == 42.0, "broadcast from rank 1");
  Tensor g = pg.all_gather(full({2, 2}, static_cast<double>(10 * r)));
  expect(g.sizes() == Shape({w, 2, 2}), "all_gather shape");
  for (int k = 0; k < w; ++k) expect(g[k][1][1].item<double>() == 10.0 * k, "all_gather values");
  pg.barrier();
  std::cout << "OK collectives rank " << r << "\n";
}

std::shared_ptr<nn::Module> make_model(const std::string& kind) {
  auto seq = nn::Sequential();
  if (kind == "bn") {
    seq->push_back(nn::Conv2d(nn::Conv2dOptions(3, 6, 3).padding(1)));
    seq->push_back(nn::BatchNorm2d(6));
    seq->push_back(nn::ReLU());
    seq->push_back(nn::Flatten());
    seq->push_back(nn::Linear(6 * 8 * 8, 10));
  } else {
    seq->push_back(nn::Flatten());
    seq->push_back(nn::Linear(3 * 8 * 8, 32));
    seq->push_back(nn::Tanh());
    seq->push_back(nn::Linear(32, 10));
  }
  return seq.ptr();
}

// Max |a - b| / (1e-5 + 1e-4 |b|) over all parameters and buffers.
double worst(nn::Module& a, nn::Module& b) {
  const auto sa = a.state_dict(), sb = b.state_dict();
  double out = 0;
  for (size_t i = 0; i < sb.size(); ++i) {
    if (sa[i].first != sb[i].first) throw std::runtime_error("state dicts differ in names");
    const Tensor x = sa[i].second.to(kFloat64), y = sb[i].second.to(kFloat64);
    const Tensor ratio = abs(x - y) / (abs(y) * 1e-4 + 1e-5);
    out = std::max(out, max(ratio).item<double>());
  }
  return out;
}

void equiv(const std::shared_ptr<dist::ProcessGroup>& pg, const std::string& kind, int64_t batch) {
  const int64_t r = pg->rank(), w = pg->size();
  // Rank r's model starts from a different seed: DataParallel's broadcast
  // must make it rank 0's.
  manual_seed(1000 + static_cast<uint64_t>(r));
  auto model = make_model(kind);
  manual_seed(1000);
  auto reference = make_model(kind);  // rank 0's initial weights, trained at batch w * B
  if (kind == "bn") dist::convert_sync_batchnorm(*model, pg->new_group("syncbn"));
  dist::DataParallel ddp(model, pg, dist::DataParallelOptions{0.002, true});
  optim::SGD opt(model->parameters(), optim::SGDOptions(0.1).momentum(0.9));
  optim::SGD ref_opt(reference->parameters(), optim::SGDOptions(0.1).momentum(0.9));
  manual_seed(7);
  const Tensor images = randn({5 * w * batch, 3, 8, 8});
  const Tensor labels = randint(0, 10, {5 * w * batch});
  double worst_seen = 0;
  for (int64_t step = 0; step < 5; ++step) {
    const int64_t g0 = step * w * batch;
    Tensor loss = cross_entropy((*model)(images.narrow(0, g0 + r * batch, batch)),
                                labels.narrow(0, g0 + r * batch, batch));
    opt.zero_grad();
    loss.backward();
    ddp.finish_gradient_sync();
    opt.step();
    Tensor ref_loss = cross_entropy((*reference)(images.narrow(0, g0, w * batch)),
                                    labels.narrow(0, g0, w * batch));
    ref_opt.zero_grad();
    ref_loss.backward();
    ref_opt.step();
    const double d = worst(*model, *reference);
    worst_seen = std::max(worst_seen, d);
    expect(d <= 1.0, "step " + std::to_string(step) + ": parameters differ from the batch " +
                         std::to_string(w * batch) + " reference by " + std::to_string(d) +
                         " tolerances (atol 1e-5, rtol 1e-4)");
  }
  std::cout << "OK equiv " << kind << " rank " << r << " buckets " << ddp.num_buckets() << " worst "
            << worst_seen << "\n";
}

void overlap(const std::shared_ptr<dist::ProcessGroup>& pg) {
  manual_seed(3);
  auto seq = nn::Sequential();
  seq->push_back(nn::Conv2d(nn::Conv2dOptions(3, 16, 3).padding(1)));
  seq->push_back(nn::ReLU());
  seq->push_back(nn::Conv2d(nn::Conv2dOptions(16, 32, 3).padding(1)));
  seq->push_back(nn::ReLU());
  seq->push_back(nn::Conv2d(nn::Conv2dOptions(32, 32, 3).padding(1)));
  seq->push_back(nn::ReLU());
  seq->push_back(nn::Flatten());
  seq->push_back(nn::Linear(32 * 32 * 32, 10));
  auto model = seq.ptr();
  dist::DataParallel ddp(model, pg, dist::DataParallelOptions{0.5, false});
  const Tensor x = randn({16, 3, 32, 32});
  const Tensor y = randint(0, 10, {16});
  Tensor loss = cross_entropy((*model)(x), y);
  const int64_t t0 = now_ns();
  loss.backward();
  const int64_t t1 = now_ns();
  ddp.finish_gradient_sync();
  const auto& tm = ddp.last_timings();
  expect(tm.buckets >= 2, "overlap: expected several buckets");
  std::cout << "OK overlap rank " << pg->rank() << " buckets " << tm.buckets << " backward_ms "
            << static_cast<double>(t1 - t0) / 1e6 << " first_bucket_start_ms "
            << static_cast<double>(tm.bucket_start_ns[0] - t0) / 1e6 << "\n";
  expect(tm.bucket_start_ns[0] < t1, "the first bucket's all-reduce started after backward ended");
}

// Trainer on 2 ranks: 2 epochs with checkpoints (rank 0 writes), then a new
// Trainer resumes from last.safetensors on every rank and trains epoch 3.
// Prints the reduced validation accuracy (the same on every rank).
void trainer(const std::shared_ptr<dist::ProcessGroup>& pg, const std::string& dir) {
  manual_seed(5);
  data::ImageDataset ds;
  ds.images = randint(0, 256, {40, 3, 8, 8}).to(kUInt8);
  ds.labels = randint(0, 10, {40});
  for (int c = 0; c < 10; ++c) ds.classes.push_back("c" + std::to_string(c));
  auto loader = [&](bool train) {
    data::LoaderOptions o;
    o.batch_size = 4;
    o.seed = 3;
    o.shuffle = train;
    o.num_replicas = pg->size();
    o.rank = pg->rank();
    o.pad_shards = train;
    return data::DataLoader(ds, o);
  };
  auto run = [&](int64_t epochs, bool resume) {
    manual_seed(9);
    auto model = make_model("bn");
    dist::convert_sync_batchnorm(*model, pg->new_group(resume ? "bn2" : "bn1"));
    optim::SGD opt(model->parameters(), optim::SGDOptions(0.05).momentum(0.9));
    train::TrainerOptions to;
    to.epochs = epochs;
    to.checkpoint_dir = dir;
    to.group = pg;
    train::Trainer t(model, opt, nullptr, to);
    if (resume) t.resume(dir + "/last.safetensors");
    data::DataLoader tr = loader(true), va = loader(false);
    t.fit(tr, &va);
    return t.history();
  };
  const train::History h2 = run(2, false);
  pg->barrier();
  const train::History h3 = run(3, true);
  expect(h3.epochs.size() == 3, "resumed history has 3 epochs");
  expect(h3.epochs[1].val_accuracy == h2.epochs[1].val_accuracy, "resume kept the history");
  std::cout << "OK trainer rank " << pg->rank() << " val_accuracy " << h3.epochs[2].val_accuracy
            << " train_loss " << h3.epochs[2].train_loss << "\n";
}

// Groups made and dropped at once, as `tandem train` did with an unused
// SyncBatchNorm group: a rank must not close its connections while another
// is still connecting (its connect would fail), so a group is whole once
// every rank's constructor has returned. Then the first group still works.
void dropped_groups(dist::ProcessGroup& pg) {
  for (int i = 0; i < 40; ++i) {
    auto g = pg.new_group("dropped" + std::to_string(i));
    if (i % 10 == 9) {
      Tensor t = ones({3});
      g->all_reduce(t);
      expect(t[0].item<double>() == pg.size(), "all_reduce on a new group");
    }
  }
  Tensor t = full({2}, static_cast<double>(pg.rank() + 1));
  pg.all_reduce(t);
  expect(t[1].item<double>() == pg.size() * (pg.size() + 1) / 2.0, "all_reduce after the groups");
  std::cout << "OK dropped_groups rank " << pg.rank() << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string scenario = argc > 1 ? argv[1] : "";
    const dist::InitOptions init = dist::options_from_env();
    if (scenario == "die" && init.rank == 1) {
      auto pg = dist::ProcessGroup::create(init);
      std::_Exit(3);  // dies after the rendezvous, before the collective
    }
    auto pg = dist::ProcessGroup::create(init);
    if (scenario == "collectives") {
      collectives(*pg);
    } else if (scenario == "equiv" && argc > 3) {
      equiv(pg, argv[2], std::atoll(argv[3]));
    } else if (scenario == "die") {
      Tensor t = ones({4});
      pg->all_reduce(t);
      std::cout << "UNEXPECTED: the all-reduce with a dead rank returned\n";
      return 0;
    } else if (scenario == "trainer" && argc > 2) {
      trainer(pg, argv[2]);
    } else if (scenario == "overlap") {
      overlap(pg);
    } else if (scenario == "dropped_groups") {
      dropped_groups(*pg);
    } else {
      std::cerr
          << "usage: tandem_dist_worker collectives|equiv MODEL B|die|overlap|dropped_groups\n";
      return 2;
    }
    pg->barrier();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "rank error: " << e.what() << "\n";
    return 1;
  }
}
