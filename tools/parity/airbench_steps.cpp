// tandem_airbench_steps: resnet-fast's first training steps on fixed batches
// of real CIFAR-10, wired as `tandem train --model resnet-fast` wires them
// (models::recipe, models::make_sgd's two groups, models::make_warmup_linear,
// optim::Lookahead, the whitening bias frozen after a step), every parameter and buffer written
// after each step to one safetensors file. tools/parity/airbench_ref.py replays the same steps in
// PyTorch as airbench94 does and compares (docs/models.md, "Parity with
// airbench94"). Batches are un-augmented: the loader is checked elsewhere.
//
//   tandem_airbench_steps CIFAR_DIR OUT.safetensors [N K T EVERY FREEZE_AFTER]
//     N images per batch (4 batches cycled), K steps of a T-step schedule,
//     lookahead every EVERY steps from step EVERY on, whitening bias trained
//     for the first FREEZE_AFTER steps.
#include <cmath>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>

#include "tandem/tandem.h"

namespace {

using namespace tandem;

void dump_state(const nn::Module& net, const std::string& prefix, TensorList& out) {
  for (const auto& [name, t] : net.named_parameters())
    out.emplace_back(prefix + name, t.detach().clone());
  for (const auto& [name, t] : net.named_buffers())
    out.emplace_back(prefix + name, t.detach().clone());
}

// The names of optim::lookahead_tensors(net), in its order.
TensorList lookahead_names(const nn::Module& net) {
  TensorList out;
  for (const auto& [name, t] : net.named_parameters())
    if (is_floating(t.dtype())) out.emplace_back(name, t);
  for (const auto& [name, t] : net.named_buffers())
    if (is_floating(t.dtype())) out.emplace_back(name, t);
  return out;
}

int run(int argc, char** argv) {
  if (argc != 3 && argc != 8) {
    std::fprintf(stderr,
                 "usage: %s CIFAR_DIR OUT.safetensors [N K T EVERY FREEZE_AFTER]\n"
                 "  (defaults: 128 10 20 3 6)\n",
                 argv[0]);
    return 2;
  }
  const std::string dir = argv[1], out = argv[2];
  const bool given = argc == 8;
  const int64_t n = given ? std::stoll(argv[3]) : 128, steps = given ? std::stoll(argv[4]) : 10,
                total = given ? std::stoll(argv[5]) : 20, every = given ? std::stoll(argv[6]) : 3,
                freeze_after = given ? std::stoll(argv[7]) : 6;
  TANDEM_CHECK(n > 1 && steps > 0 && total >= steps && every > 0 && freeze_after >= 0,
               "airbench_steps: need N > 1, K > 0, T >= K, EVERY > 0, FREEZE_AFTER >= 0");
  const data::Cifar10 cifar = data::read_cifar10(dir);
  const int64_t n_white = 5000;  // airbench whitens from the first 5,000 images
  TANDEM_CHECK(cifar.train.size() >= std::max(4 * n, n_white), "airbench_steps: ", dir,
               " has too few training images");
  const models::Recipe r = models::recipe("resnet-fast");
  manual_seed(0);
  nn::Sequential net = models::make("resnet-fast");
  models::WhiteningOptions wopt;
  wopt.mean = r.mean;
  wopt.std = r.std;
  models::init_whitening(*net, cifar.train.images.slice(0, 0, n_white), wopt);

  TensorList dump;
  dump_state(*net, "init.", dump);
  dump.emplace_back("white_images", cifar.train.images.slice(0, 0, n_white).contiguous());
  const Tensor mean = from_vector(r.mean, {1, 3, 1, 1}).to(kFloat32);
  const Tensor std = from_vector(r.std, {1, 3, 1, 1}).to(kFloat32);
  // Plus noise of 1e-3: flat regions of the images make exactly equal conv
  // outputs, and max-pool sends the gradient to whichever of equal maxima
  // rounding makes first (both valid), which the comparison would count.
  const Tensor x_all =
      ((cifar.train.images.slice(0, 0, 4 * n).to(kFloat32) * (1.0 / 255.0) - mean) / std +
       rand({4 * n, 3, 32, 32}) * 1e-3)
          .contiguous();
  const Tensor y_all = cifar.train.labels.slice(0, 0, 4 * n).contiguous();
  dump.emplace_back("images", x_all);
  dump.emplace_back("labels", y_all);

  // The optimizer and schedule as tools/cli/train.cpp makes them for the recipe.
  const std::unique_ptr<optim::SGD> opt =
      models::make_sgd(*net,
                       optim::SGDOptions(models::lr_for_batch(r, n))
                           .momentum(r.momentum)
                           .nesterov(r.nesterov)
                           .weight_decay(r.weight_decay),
                       r.batchnorm_bias_lr_scale);
  const auto sched =
      models::make_warmup_linear(*opt, total, r.warmup_fraction, r.start_factor, r.end_factor);
  optim::LookaheadOptions lo = r.lookahead_options;
  lo.start_epoch = 0;  // a short run: average from the first due step
  lo.every = every;
  optim::Lookahead lookahead(optim::lookahead_tensors(*net), lo);

  std::vector<double> losses;
  net->train();
  for (int64_t s = 0; s < steps; ++s) {
    models::set_whitening_bias_trainable(*net, s < freeze_after);
    opt->zero_grad();
    const int64_t b = s % 4;
    const Tensor logits = (*net)(x_all.slice(0, b * n, (b + 1) * n));
    const Tensor loss = cross_entropy(logits, y_all.slice(0, b * n, (b + 1) * n), Reduction::Mean,
                                      r.label_smoothing);
    loss.backward();
    opt->step();
    sched->step();
    lookahead.after_step(s + 1, 0, total);
    losses.push_back(loss.item<double>());
    std::printf("step %lld: loss %.7f\n", static_cast<long long>(s + 1), losses.back());
    const std::string tag = "step" + std::to_string(s + 1) + ".";
    dump_state(*net, tag, dump);
    // What the next step starts from besides the weights: the momentum
    // buffers and the lookahead average (the replay checks each step alone).
    for (const auto& [name, p] : net->named_parameters()) {
      const Tensor buf = opt->momentum_buffer(p);
      if (buf.defined()) dump.emplace_back(tag + "momentum." + name, buf.clone());
    }
    if (lookahead.started()) {
      size_t i = 0;
      for (const auto& [name, t] : lookahead_names(*net))
        dump.emplace_back(tag + "average." + name, lookahead.average()[i++].clone());
    }
  }
  lookahead.end_epoch();
  dump_state(*net, "end.", dump);
  dump.emplace_back("losses", from_vector(losses, {steps}));
  net->eval();
  {
    NoGradGuard no_grad;
    dump.emplace_back("eval_logits", (*net)(x_all.slice(0, 0, n)).detach().clone());
  }
  save_safetensors(out, dump,
                   {{"n", std::to_string(n)},
                    {"steps", std::to_string(steps)},
                    {"total", std::to_string(total)},
                    {"every", std::to_string(every)},
                    {"freeze_after", std::to_string(freeze_after)}});
  std::printf("wrote %s\n", out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "airbench_steps: %s\n", e.what());
    return 1;
  }
}
