// Modern SAE variants (topk, batchtopk, l1), their building blocks, AUROC and the held-out split,
// against the Python reference (tests/python/sae_oracle.py).
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "engine/checkpoint.h"
#include "engine/error.h"
#include "engine/features.h"
#include "engine/fsutil.h"
#include "engine/npy.h"
#include "engine/pipeline.h"
#include "engine/sae.h"
#include "engine/sae_eval.h"
#include "engine/torch_util.h"
#include "engine/workspace.h"
#include "test_helpers.h"

// After the LibTorch headers (glog defines CHECK too).
#include <doctest/doctest.h>

using nlohmann::json;

namespace {

json oracle(const std::string& args) {
  std::string out;
  REQUIRE(testutil::runPython(testutil::pyScript("sae_oracle.py"), args, &out) == 0);
  return json::parse(out);
}

torch::Tensor tensorOf(const json& j) {
  const auto data = j["data"].get<std::vector<double>>();
  const auto shape = j["shape"].get<std::vector<int64_t>>();
  return torch::tensor(data, torch::kFloat64).to(torch::kFloat32).reshape(shape);
}

void checkClose(const torch::Tensor& got, const json& want, double tol, const char* what) {
  const torch::Tensor w = tensorOf(want);
  REQUIRE(got.sizes() == w.sizes());
  const double err = (got.to(torch::kFloat64) - w.to(torch::kFloat64)).abs().max().item<double>();
  INFO(std::string(what) << ": max abs error " << err);
  CHECK(err <= tol);
}

}  // namespace

TEST_CASE("SAE building blocks equal the Python reference") {
  const json ref = oracle("blocks");
  const torch::Tensor pre = tensorOf(ref["pre"]), wd = tensorOf(ref["wd"]);
  const int64_t k = ref["k"];
  checkClose(engine::topkActivation(pre, k), ref["topk"], 1e-6, "topk");
  checkClose(engine::batchTopkActivation(pre, k), ref["batchtopk"], 1e-6, "batchtopk");
  CHECK(engine::batchThreshold(pre, k) == doctest::Approx(ref["batch_threshold"].get<double>()));
  checkClose(engine::thresholdActivation(pre, torch::tensor(ref["theta"].get<double>())),
             ref["jumprelu"], 1e-6, "threshold encoding");

  std::vector<uint8_t> deadV;
  for (bool b : ref["dead"]) deadV.push_back(b);
  const torch::Tensor dead =
      torch::tensor(std::vector<int64_t>(deadV.begin(), deadV.end()), torch::kLong)
          .to(torch::kBool);
  const torch::Tensor residual = tensorOf(ref["residual"]);
  CHECK(engine::auxkLoss(pre, residual, wd, dead, 2).item<double>() ==
        doctest::Approx(ref["aux"].get<double>()).epsilon(1e-6));
  CHECK(engine::auxkLoss(pre, residual, wd, dead, 100).item<double>() ==
        doctest::Approx(ref["aux_all"].get<double>()).epsilon(1e-6));
  CHECK(engine::auxkLoss(pre, residual, wd, torch::zeros_like(dead), 2).item<double>() == 0.0);

  torch::Tensor w = wd.clone().requires_grad_(true);
  w.mutable_grad() = tensorOf(ref["grad"]);
  engine::removeParallelGradient(w);
  checkClose(w.grad(), ref["grad_projected"], 1e-5, "parallel gradient removed");
  // The projected gradient is orthogonal to each decoder row.
  CHECK((w.grad() * wd).sum(1).abs().max().item<double>() < 1e-5);
  torch::Tensor wn = wd.clone();
  engine::normaliseDecoderRows(wn);
  checkClose(wn, ref["wd_normalised"], 1e-6, "decoder rows normalised");

  checkClose(engine::geometricMedian(tensorOf(ref["gm_x"])), ref["geometric_median"], 1e-5,
             "geometric median");
  const auto lrs = ref["lr_factors"].get<std::vector<double>>();
  for (int s = 0; s < 10; ++s)
    CHECK(engine::lrFactor(s, 10, 0.2, 0.3) == doctest::Approx(lrs[s]).epsilon(1e-12));
}

TEST_CASE("topk, batchtopk and l1 training steps equal the Python reference, fp32 and bf16") {
  const json all = oracle("train");
  // The bf16 products must change the result (else this would not test them).
  for (const char* v : {"topk", "l1"}) {
    const auto a = all[v]["final"]["we"]["data"].get<std::vector<double>>();
    const auto b = all[std::string(v) + "-bf16"]["final"]["we"]["data"].get<std::vector<double>>();
    double diff = 0;
    for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - b[i]));
    CHECK(diff > 1e-4);
  }
  for (const std::string run : {"topk", "batchtopk", "l1", "topk-bf16", "l1-bf16"}) {
    CAPTURE(run);
    const json& r = all[run];
    const json& c = r["config"];
    const bool bf16 = run.size() > 5 && run.compare(run.size() - 5, 5, "-bf16") == 0;
    const std::string variant = bf16 ? run.substr(0, run.size() - 5) : run;
    engine::SaeConfig cfg = engine::saeDefaults(variant);
    cfg.precision = bf16 ? "bf16" : "fp32";
    cfg.features = c["F"];
    cfg.k = c["k"];
    cfg.kAux = c["k_aux"];
    cfg.auxAlpha = c["aux_alpha"];
    cfg.lr = c["lr"];
    cfg.lrWarmup = c["lr_warmup"];
    cfg.lrDecay = c["lr_decay"];
    cfg.l1 = c["l1"];
    cfg.l1Warmup = c["l1_warmup"];
    cfg.gradClip = c["grad_clip"];
    cfg.thresholdEma = c["threshold_ema"];
    cfg.weightDecay = 0;
    const int64_t d = c["D"], steps = c["steps"];
    engine::SaeTrainer trainer(cfg, d, steps, c["dead_after"].get<int64_t>());
    auto gen = torch::make_generator<at::CPUGeneratorImpl>(1);
    const bool writtenOut = !bf16 && variant != "l1";  // TopkCpuStep: the Python steps check it
    trainer.initialise(torch::randn({8, d}), gen);
    {
      torch::NoGradGuard g;
      trainer.sae()->weight_encoder.copy_(tensorOf(r["init"]["we"]));
      trainer.sae()->weight_decoder.copy_(tensorOf(r["init"]["wd"]));
      trainer.sae()->bias_encoder.copy_(tensorOf(r["init"]["be"]));
      trainer.sae()->bias_decoder.copy_(tensorOf(r["init"]["bd"]));
    }
    for (int64_t s = 0; s < steps; ++s) {
      const auto st = trainer.step(tensorOf(r["xs"][s]), true);
      const json& log = r["log"][s];
      CHECK(st.loss == doctest::Approx(log["loss"].get<double>()).epsilon(1e-5));
      CHECK(st.aux == doctest::Approx(log["aux"].get<double>()).epsilon(1e-5));
      CHECK(st.l0 == doctest::Approx(log["l0"].get<double>()));
      CHECK(st.lr == doctest::Approx(log["lr"].get<double>()));
    }
    CHECK(trainer.writtenOut() == writtenOut);
    const json& fin = r["final"];
    checkClose(trainer.sae()->weight_encoder, fin["we"], 2e-5, "weight_encoder");
    checkClose(trainer.sae()->weight_decoder, fin["wd"], 2e-5, "weight_decoder");
    checkClose(trainer.sae()->bias_encoder, fin["be"], 2e-5, "bias_encoder");
    checkClose(trainer.sae()->bias_decoder, fin["bd"], 2e-5, "bias_decoder");
    const auto since = fin["since"].get<std::vector<int64_t>>();
    for (size_t j = 0; j < since.size(); ++j)
      CHECK(trainer.sinceFired()[j].item<int64_t>() == since[j]);
    CHECK(trainer.threshold() == doctest::Approx(fin["threshold"].get<double>()).epsilon(1e-5));
    if (variant != "l1")  // unit decoder rows after every step
      CHECK((trainer.sae()->weight_decoder.norm(2, 1) - 1).abs().max().item<double>() < 1e-5);
  }
}

TEST_CASE("kthLargestPositive is the n-th largest ReLU, as torch's topk finds it") {
  torch::manual_seed(3);
  const torch::Tensor normal = torch::randn({300, 700});  // the sample's bar, then exact
  const torch::Tensor ties = (torch::randn({300, 700}) * 4).round() / 4;  // few distinct values
  const torch::Tensor negative = -torch::rand({40, 50});  // no positive value at all
  for (const auto& [name, v] :
       {std::pair{"normal", normal}, {"ties", ties}, {"negative", negative}}) {
    const torch::Tensor r = torch::relu(v).flatten();
    for (int64_t n :
         {int64_t{1}, int64_t{7}, int64_t{2100}, int64_t{60000}, v.numel() / 2 + 1000, v.numel()}) {
      if (n > v.numel()) continue;
      const float want = std::get<0>(r.topk(n)).min().item<float>();
      for (bool sample : {true, false}) {
        CAPTURE(name);
        CAPTURE(n);
        CAPTURE(sample);
        CHECK(engine::kthLargestPositive(v.data_ptr<float>(), v.numel(), n, sample) == want);
      }
    }
  }
  CHECK(engine::batchThreshold(normal, 7) ==
        std::get<0>(torch::relu(normal).flatten().topk(2100)).min().item<float>());
}

TEST_CASE("the topk and batchtopk steps written out have autograd's gradients, reproducibly") {
  const int64_t b = 256, d = 48, nf = 320, k = 8, kAux = 32;
  const double alpha = 0.5;  // large, so that AuxK's gradients weigh
  torch::manual_seed(5);
  const torch::Tensor x = torch::randn({b, d});
  const torch::Tensor dead = torch::rand({nf}) < 0.4;
  for (const bool batchTopk : {false, true}) {
    CAPTURE(batchTopk);
    engine::SparseAutoencoder sae(d, nf);
    {
      torch::NoGradGuard g;
      sae->weight_encoder.copy_(torch::randn({d, nf}) * 0.3);
      sae->weight_decoder.copy_(torch::randn({nf, d}) * 0.2);
      sae->bias_encoder.copy_(torch::randn({nf}) * 0.1);
      sae->bias_decoder.copy_(torch::randn({d}) * 0.1);
    }
    // The reference: autograd through the building blocks, in float64.
    std::vector<torch::Tensor> p64;
    for (const auto& p :
         {sae->weight_encoder, sae->weight_decoder, sae->bias_encoder, sae->bias_decoder})
      p64.push_back(p.detach().to(torch::kFloat64).requires_grad_(true));
    const torch::Tensor x64 = x.to(torch::kFloat64);
    const torch::Tensor pre = torch::addmm(p64[2], x64 - p64[3], p64[0]);
    const torch::Tensor f =
        batchTopk ? engine::batchTopkActivation(pre, k) : engine::topkActivation(pre, k);
    const torch::Tensor xHat = torch::mm(f, p64[1]) + p64[3];
    const torch::Tensor recon = (xHat - x64).pow(2).mean();
    const torch::Tensor aux = engine::auxkLoss(pre, (x64 - xHat).detach(), p64[1], dead, kAux);
    (recon + alpha * aux).backward();

    std::vector<std::vector<torch::Tensor>> grads;
    const int threadsBefore = at::get_num_threads();
    for (int threads : {1, 3, 3}) {
      at::set_num_threads(threads);
      engine::TopkCpuStep step(sae, batchTopk, k, kAux, alpha);
      const engine::TopkCpuStep::Result r = step.gradients(x, dead);
      CHECK(r.reconstruction == doctest::Approx(recon.item<double>()).epsilon(1e-5));
      CHECK(r.aux == doctest::Approx(aux.item<double>()).epsilon(1e-5));
      CHECK(r.aux > 0.01);
      CHECK(r.l0 == doctest::Approx((f > 0).sum(1).to(torch::kFloat64).mean().item<double>()));
      CHECK(r.threshold == doctest::Approx(engine::batchThreshold(pre, k)).epsilon(1e-5));
      CHECK(torch::equal(r.fired, (f > 0).any(0)));
      const char* names[] = {"dL/dW_e", "dL/dW_d", "dL/db_e", "dL/db_d"};
      const torch::Tensor got[] = {sae->weight_encoder.grad(), sae->weight_decoder.grad(),
                                   sae->bias_encoder.grad(), sae->bias_decoder.grad()};
      for (int i = 0; i < 4; ++i) {
        const torch::Tensor want = p64[i].grad();
        const double err = (got[i].to(torch::kFloat64) - want).abs().max().item<double>() /
                           want.abs().max().item<double>();
        CAPTURE(names[i]);
        CHECK(err < 1e-5);
      }
      grads.push_back({got[0].clone(), got[1].clone(), got[2].clone()});
    }
    at::set_num_threads(threadsBefore);
    // Summed per feature in row order: the same thread count gives the same bits, run to run.
    for (int i = 0; i < 3; ++i) CHECK(torch::equal(grads[1][i], grads[2][i]));
  }
}

TEST_CASE("the reference SAE's step by hand has autograd's and Python's gradients") {
  const json ref = oracle("seed");
  const torch::Tensor x = tensorOf(ref["x"]).contiguous();
  const torch::Tensor rows = torch::tensor(ref["rows"].get<std::vector<int64_t>>(), torch::kLong);
  const double l1 = ref["l1"];
  const int64_t d = x.size(1), nf = tensorOf(ref["init"]["be"]).numel();
  auto makeSae = [&] {
    engine::SparseAutoencoder sae(d, nf);
    torch::NoGradGuard g;
    sae->weight_encoder.copy_(tensorOf(ref["init"]["we"]));
    sae->weight_decoder.copy_(tensorOf(ref["init"]["wd"]));
    sae->bias_encoder.copy_(tensorOf(ref["init"]["be"]));
    sae->bias_decoder.copy_(tensorOf(ref["init"]["bd"]));
    return sae;
  };
  auto checkGradients = [&](engine::SparseAutoencoder& sae, const char* how) {
    CAPTURE(how);
    checkClose(sae->weight_encoder.grad(), ref["grad"]["we"], 2e-5, "dL/dW_e");
    checkClose(sae->weight_decoder.grad(), ref["grad"]["wd"], 2e-5, "dL/dW_d");
    checkClose(sae->bias_encoder.grad(), ref["grad"]["be"], 2e-5, "dL/db_e");
    checkClose(sae->bias_decoder.grad(), ref["grad"]["bd"], 2e-5, "dL/db_d");
  };
  auto maxParameterDifference = [](engine::SparseAutoencoder& a, engine::SparseAutoencoder& b) {
    double m = 0;
    for (const auto& [pa, pb] : {std::pair{a->weight_encoder, b->weight_encoder},
                                 {a->weight_decoder, b->weight_decoder},
                                 {a->bias_encoder, b->bias_encoder},
                                 {a->bias_decoder, b->bias_decoder}})
      m = std::max(m, (pa - pb).abs().max().item<double>());
    return m;
  };
  const int threadsBefore = at::get_num_threads();
  for (int threads : {1, 2, 3}) {  // one, two and three row blocks of the 37 rows
    CAPTURE(threads);
    at::set_num_threads(threads);
    engine::SparseAutoencoder sae = makeSae();
    engine::SeedCpuStep hand(sae, l1);
    const engine::SeedStepLosses l = hand.gradients(x, rows);
    CHECK(l.total == doctest::Approx(ref["loss"].get<double>()).epsilon(1e-6));
    CHECK(l.reconstruction == doctest::Approx(ref["recon"].get<double>()).epsilon(1e-6));
    CHECK(l.sparsity == doctest::Approx(ref["sparsity"].get<double>()).epsilon(1e-6));
    CHECK(l.l0 == doctest::Approx(ref["l0"].get<double>()));
    checkGradients(sae, "by hand");
    // The features that fire on no row get exactly zero encoder gradients.
    const torch::Tensor zeroColumns = (sae->weight_encoder.grad() == 0).all(0);
    CHECK(zeroColumns.sum().item<int64_t>() == ref["never_fire"].get<int64_t>());
    CHECK(ref["never_fire"].get<int64_t>() > 0);
  }
  at::set_num_threads(threadsBefore);
  {
    engine::SparseAutoencoder sae = makeSae();
    torch::optim::SGD still(sae->parameters(), torch::optim::SGDOptions(0.0));
    const engine::SeedStepLosses l =
        engine::seedAutogradStep(sae, x.index_select(0, rows), l1, still, true);
    CHECK(l.total == doctest::Approx(ref["loss"].get<double>()).epsilon(1e-6));
    CHECK(l.l0 == doctest::Approx(ref["l0"].get<double>()));
    checkGradients(sae, "autograd");
  }

  SUBCASE("steps overwrite the gradients and take the optimiser's step") {
    // SGD, whose steps are linear in the gradients (Adam's would hide errors in them): three
    // steps by hand equal three through autograd.
    engine::SparseAutoencoder a = makeSae(), b = makeSae();
    torch::optim::SGD optA(a->parameters(), torch::optim::SGDOptions(0.05));
    torch::optim::SGD optB(b->parameters(), torch::optim::SGDOptions(0.05));
    engine::SeedCpuStep hand(a, l1);
    for (int s = 0; s < 3; ++s) {
      const torch::Tensor r = (rows + 11 * s) % x.size(0);
      const auto la = hand.step(x, r, optA);
      const auto lb = engine::seedAutogradStep(b, x.index_select(0, r), l1, optB, true);
      CHECK(la.total == doctest::Approx(lb.total).epsilon(1e-5));
    }
    CHECK(maxParameterDifference(a, b) < 1e-5);
    CHECK((a->weight_encoder - tensorOf(ref["init"]["we"])).abs().max().item<double>() > 1e-2);
  }
  SUBCASE("the fused Adam update is torch's, on torch's own state") {
    // The same gradients into both; weight decay on. Four steps (the first is torch's own, which
    // creates the state), then a fifth through torch's step on both: it sees the fused steps'
    // moments and step count.
    engine::SparseAutoencoder a = makeSae(), b = makeSae();
    const auto options = torch::optim::AdamOptions(1e-2).weight_decay(0.05);
    torch::optim::Adam optA(a->parameters(), options), optB(b->parameters(), options);
    engine::SeedCpuStep handA(a, l1), handB(b, l1);
    for (int s = 0; s < 5; ++s) {
      const torch::Tensor r = (rows + 5 * s) % x.size(0);
      if (s < 4) {
        handA.step(x, r, optA);
      } else {
        handA.gradients(x, r);
        optA.step();
      }
      handB.gradients(x, r);
      optB.step();
    }
    CHECK(handA.fusedAdamSteps() == 3);
    CHECK(maxParameterDifference(a, b) < 1e-6);
    CHECK((a->weight_encoder - tensorOf(ref["init"]["we"])).abs().max().item<double>() > 1e-2);
  }
  SUBCASE("a zero residual has the norm's zero gradient, as autograd's") {
    // Every row the same vector, b_d that vector and W_d = 0: x̂ = x exactly.
    const torch::Tensor same = x[rows[0].item<int64_t>()].expand({8, d}).contiguous();
    const torch::Tensor r = torch::arange(8, torch::kLong);
    engine::SparseAutoencoder a = makeSae(), b = makeSae();
    for (auto* s : {&a, &b}) {
      torch::NoGradGuard g;
      (*s)->weight_decoder.zero_();
      (*s)->bias_decoder.copy_(same[0]);
    }
    engine::SeedCpuStep hand(a, l1);
    const auto la = hand.gradients(same, r);
    torch::optim::SGD still(b->parameters(), torch::optim::SGDOptions(0.0));
    engine::seedAutogradStep(b, same.index_select(0, r), l1, still, true);
    CHECK(la.reconstruction == 0.0);
    CHECK(torch::isfinite(a->weight_encoder.grad()).all().item<bool>());
    CHECK((a->weight_encoder.grad() - b->weight_encoder.grad()).abs().max().item<double>() < 1e-6);
    CHECK((a->bias_decoder.grad() - b->bias_decoder.grad()).abs().max().item<double>() < 1e-6);
  }
  SUBCASE("rows outside the data and other inputs are errors, not crashes") {
    engine::SparseAutoencoder sae = makeSae();
    engine::SeedCpuStep hand(sae, l1);
    CHECK_THROWS_AS(hand.gradients(x, torch::tensor({int64_t{0}, x.size(0)}, torch::kLong)),
                    engine::Error);
    CHECK_THROWS_AS(hand.gradients(x.to(torch::kFloat64), rows), engine::Error);
    CHECK_THROWS_AS(hand.gradients(x, rows.to(torch::kInt)), engine::Error);
  }
}

TEST_CASE("fusedAdamStep is torch's Adam step: groups, weight decay, parameters without gradient") {
  auto params = [] {
    torch::manual_seed(9);
    std::vector<torch::Tensor> p;
    for (int64_t n : {1000, 37, 5, 4096}) p.push_back(torch::randn({n}).requires_grad_(true));
    return p;
  };
  auto optimiser = [](const std::vector<torch::Tensor>& p, bool amsgrad) {
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(std::vector<torch::Tensor>{p[0], p[1]},
                        std::make_unique<torch::optim::AdamOptions>(
                            torch::optim::AdamOptions(1e-2).weight_decay(0.1).amsgrad(amsgrad)));
    groups.emplace_back(std::vector<torch::Tensor>{p[2], p[3]},
                        std::make_unique<torch::optim::AdamOptions>(
                            torch::optim::AdamOptions(3e-3).betas({0.8, 0.95}).eps(1e-6)));
    return torch::optim::Adam(std::move(groups));
  };
  std::vector<torch::Tensor> a = params(), b = params();
  torch::optim::Adam optA = optimiser(a, false), optB = optimiser(b, false);
  int fused = 0;
  for (int s = 0; s < 5; ++s) {
    for (auto* ps : {&a, &b})
      for (size_t i = 0; i < ps->size(); ++i) {
        if (i == 2 && s >= 2) {  // p[2] has no gradient from step 2 on: not updated
          (*ps)[i].mutable_grad() = torch::Tensor();
          continue;
        }
        (*ps)[i].mutable_grad() = torch::sin((*ps)[i].detach() * (s + 1)) + 0.01 * s;
      }
    if (engine::fusedAdamStep(optA))
      ++fused;
    else
      optA.step();
    optB.step();
  }
  CHECK(fused == 4);  // all but the first step, which creates torch's state
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(i);
    CHECK((a[i] - b[i]).abs().max().item<double>() < 1e-6);
    CHECK((a[i] - params()[i]).abs().max().item<double>() > 1e-3);  // they moved
  }
  // amsgrad, and the first step, are left to torch's step.
  std::vector<torch::Tensor> c = params();
  torch::optim::Adam optC = optimiser(c, true);
  for (auto& p : c) p.mutable_grad() = torch::ones_like(p);
  CHECK_FALSE(engine::fusedAdamStep(optC));
  optC.step();
  CHECK_FALSE(engine::fusedAdamStep(optC));
}

TEST_CASE("countDeadFeatures equals the full product's count, late firings included") {
  torch::manual_seed(3);
  const int64_t n = 6000, d = 16, nf = 40;
  torch::Tensor x = torch::rand({n, d}) - 0.5;  // |x| < 1 everywhere
  torch::Tensor we = torch::randn({d, nf}), be = torch::zeros({nf}), bd = torch::zeros({d});
  be.slice(0, 0, 10).fill_(-1000);  // features 0-9 never fire
  // Features 10-19 read one dimension each and fire only where it is 10: on one row each, far
  // into the pass (and in its last row), after the first blocks have dropped the busy features.
  // Feature 19's row is never set: it stays silent.
  for (int64_t j = 10; j < 20; ++j) {
    we.select(1, j).zero_();
    we[j - 10][j] = 1;
    be[j] = -5;
    if (j < 19) x[j == 18 ? n - 1 : 1500 + 400 * (j - 10)][j - 10] = 10;
  }
  const int64_t brute =
      (torch::addmm(be, x - bd, we) > 0).any(0).logical_not().sum().item<int64_t>();
  CHECK(brute == 11);
  CHECK(engine::countDeadFeatures(we, be, bd, x) == brute);
  CHECK(engine::countDeadFeatures(we, be, bd, x.slice(0, 0, 1000)) == 20);  // one block
  CHECK(engine::countDeadFeatures(we, be.fill_(-1000), bd, x) == nf);
}

TEST_CASE("AUROC handles ties like scipy's Mann-Whitney U") {
  const json ref = oracle("auroc");
  const auto scores = ref["scores"].get<std::vector<float>>();
  const auto labels = ref["labels"].get<std::vector<uint8_t>>();
  CHECK(engine::auroc(scores, labels) ==
        doctest::Approx(ref["auroc"].get<double>()).epsilon(1e-12));
  CHECK(engine::auroc({1, 2, 3, 4}, {0, 0, 1, 1}) == 1.0);
  CHECK(engine::auroc({1, 1, 1, 1}, {0, 1, 0, 1}) == 0.5);
  CHECK(std::isnan(engine::auroc({1, 2}, {1, 1})));
}

TEST_CASE("variant defaults, validation and run names") {
  const engine::SaeConfig seed = engine::saeDefaults("seed");
  CHECK(seed.features == 512);
  CHECK(seed.lr == 1e-5);
  CHECK_FALSE(seed.holdout);
  const engine::SaeConfig topk = engine::saeDefaults("topk");
  CHECK(topk.features == 4096);
  CHECK(topk.k == 16);
  CHECK(topk.batch == 4096);
  CHECK(topk.kAux == 256);
  CHECK(topk.auxAlpha == 1.0 / 32);
  CHECK(engine::saeEffectiveLr(topk) == doctest::Approx(4e-4));  // 2e-4·sqrt(16384/4096)
  CHECK(engine::saeRunName(topk) == "topk-f4096-k16-s0");
  engine::SaeConfig bad = topk;
  bad.k = 0;
  CHECK_THROWS(engine::validate(bad));
  bad = topk;
  bad.variant = "gated";
  CHECK_THROWS(engine::validate(bad));
  bad = topk;
  bad.name = "../x";
  CHECK_THROWS(engine::validate(bad));
  CHECK_NOTHROW(engine::validate(engine::saeDefaults("batchtopk")));
  CHECK_NOTHROW(engine::validate(engine::saeDefaults("l1")));
  CHECK(engine::toJson(seed).count("k") == 0);  // the seed record is unchanged
  CHECK(engine::toJson(topk)["k_aux"] == 256);
  // --precision: bf16 runs get their own name (kept beside the fp32 run) and record it.
  CHECK(engine::toJson(seed).count("precision") == 0);
  engine::SaeConfig bf = topk;
  bf.precision = "bf16";
  CHECK(engine::saeRunName(bf) == "topk-f4096-k16-s0-bf16");
  CHECK(engine::toJson(bf)["precision"] == "bf16");
  bf.precision = "fp16";
  CHECK_THROWS_WITH(engine::validate(bf),
                    "--precision fp16: the SAE runs in fp32, bf16 or tf32 (fp16 is for fine-tuning "
                    "and embedding on CUDA)");
  bf.precision = "fp8";
  CHECK_THROWS_WITH(engine::validate(bf), "--precision fp8: expected fp32, bf16 or tf32");
  bf.precision = "tf32";  // valid; runs on CUDA only (checked when the stage starts)
  CHECK_NOTHROW(engine::validate(bf));
  CHECK(engine::saeRunName(bf) == "topk-f4096-k16-s0-tf32");

  // A recorded run's settings come back from its record (the app starts from the last run's).
  for (const char* v : {"seed", "l1", "topk", "batchtopk"}) {
    CAPTURE(v);
    engine::SaeConfig c = engine::saeDefaults(v);
    c.features = 96;
    c.batch = 48;
    c.epochs = 3;
    c.l1 = 0.25;
    c.k = 5;
    c.kAux = 7;
    c.lrWarmup = 0.1;
    c.precision = "bf16";
    c.run.seed = 4;  // run options are not settings of the app's next run
    const engine::SaeConfig back = engine::saeConfigFromJson(engine::toJson(c));
    c.run = engine::RunOptions{};
    CHECK(engine::toJson(back) == engine::toJson(c));
    CHECK(back.name.empty());
  }
  // A record without the keys added later (variant, precision) is a fp32 seed run.
  const engine::SaeConfig old = engine::saeConfigFromJson(json{{"features", 256}, {"epochs", 2}});
  CHECK(old.variant == "seed");
  CHECK(old.features == 256);
  CHECK(old.precision == "fp32");
  CHECK(old.lr == 1e-5);
}

TEST_CASE("topk and batchtopk SAEs in a workspace: folded weights, several SAEs, metrics") {
  testutil::TempDir dir("sae_ws");
  const std::string ws = dir.str() + "/ws";
  engine::Workspace::open(ws, true);
  // Embeddings that are sparse combinations of 24 directions in 16 dimensions, plus an offset.
  const int64_t n = 600, d = 16, atoms = 24;
  torch::manual_seed(3);
  const torch::Tensor dict = engine::l2normalizeRows(torch::randn({atoms, d}));
  const torch::Tensor codes =
      torch::rand({n, atoms}) * (torch::rand({n, atoms}) < 3.0 / atoms).to(torch::kFloat32);
  const torch::Tensor emb = (torch::mm(codes, dict) + 0.5).contiguous();
  engine::writeNpy(engine::Workspace::open(ws, false).embeddingsPath(), engine::fromTorch(emb));
  std::vector<std::string> names;
  for (int64_t i = 0; i < n; ++i) names.push_back("img" + std::to_string(100000 + i) + ".png");
  engine::writeImageList(engine::Workspace::open(ws, false).imagesPath(), names);

  engine::JobContext ctx;
  engine::SaeConfig cfg = engine::saeDefaults("topk");
  cfg.workspace = ws;
  cfg.features = 64;
  cfg.k = 4;
  cfg.kAux = 16;
  cfg.batch = 128;
  cfg.steps = 300;
  cfg.run.threads = 2;
  engine::runSae(cfg, ctx);
  engine::SaeConfig bt = cfg;
  bt.variant = "batchtopk";
  bt.name = "bt";
  engine::runSae(bt, ctx);

  engine::Workspace w = engine::Workspace::open(ws, false);
  const nlohmann::json& m = w.manifest();
  CHECK(m["current_sae"] == "bt");
  REQUIRE(m["sae_runs"].contains("topk-f64-k4-s0"));
  REQUIRE(m["sae_runs"].contains("bt"));
  CHECK(engine::fileExists(w.path("saes/topk-f64-k4-s0.pt")));
  CHECK(m["sae_runs"]["bt"]["split"]["kind"] == "hash10");
  const int64_t heldOut = m["sae_runs"]["bt"]["split"]["held_out"];
  CHECK(heldOut > 30);
  CHECK(m["sae_runs"]["bt"]["vectors"].get<int64_t>() == n - heldOut);  // held out: excluded

  // sae.pt: reference keys plus the extra ones; the reference encode + θ gives the variant's
  // features, and they reconstruct the held-out split well with about k active latents.
  const nlohmann::json ev = engine::evaluateSae(ws, "", ctx);
  CHECK(ev["variant"] == "batchtopk");
  CHECK(ev["explained_variance"].get<double>() > 0.6);  // folding wrong: far below 0
  CHECK(ev["l0"].get<double>() > 2);
  CHECK(ev["l0"].get<double>() < 8);
  CHECK(ev["cosine"].get<double>() > 0.9);
  CHECK(ev["explained_variance"] == m["sae_runs"]["bt"]["metrics"]["explained_variance"]);
  const nlohmann::json ev2 = engine::evaluateSae(ws, "topk-f64-k4-s0", ctx);
  CHECK(ev2["variant"] == "topk");
  CHECK(ev2["explained_variance"].get<double>() > 0.6);
  CHECK_THROWS_AS(engine::evaluateSae(ws, "nope", ctx), engine::Error);

  // The thresholded encoding by hand, from the file.
  const engine::StateDict sd = engine::readTensorFile(w.saePath());
  for (const char* key : {"weight_encoder", "weight_decoder", "bias_encoder", "bias_decoder",
                          "threshold", "input_mean", "input_scale"})
    CHECK(engine::findTensor(sd, key) != nullptr);
  const auto t = [&](const char* k) { return engine::toTorch(*engine::findTensor(sd, k)); };
  const torch::Tensor x = engine::l2normalizeRows(emb);
  const torch::Tensor fRef =
      torch::relu(torch::addmm(t("bias_encoder"), x - t("bias_decoder"), t("weight_encoder")));
  // Undo the folding: the scaled-space pre-activation is fRef's argument + θ.
  const torch::Tensor theta = t("threshold");
  const torch::Tensor pre =
      torch::addmm(t("bias_encoder"), x - t("bias_decoder"), t("weight_encoder")) + theta;
  const torch::Tensor fJump = engine::thresholdActivation(pre, theta);
  CHECK((fRef + theta * (fRef > 0).to(torch::kFloat32) - fJump).abs().max().item<double>() < 1e-4);

  // Switching the current SAE; top-k of a non-current SAE by name.
  engine::selectSae(ws, "topk-f64-k4-s0");
  w.reload();
  CHECK(w.manifest()["current_sae"] == "topk-f64-k4-s0");
  const auto a = engine::readFileBytes(w.saePath());
  const auto b = engine::readFileBytes(w.path("saes/topk-f64-k4-s0.pt"));
  CHECK(a == b);
  const auto top =
      engine::computeTopK(ws, engine::FeatureKind::Sparse, 0, 5, engine::RankRule::Raw, "bt");
  CHECK(top.size() == 5);
  CHECK_THROWS_AS(engine::selectSae(ws, "missing"), engine::Error);
}
