// The fine-tuning and embedding stages (LibTorch).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "checkpoint.h"
#include "dataset.h"
#include "error.h"
#include "fsutil.h"
#include "import.h"
#include "npy.h"
#include "pipeline.h"
#include "resnet.h"
#include "torch_util.h"
#include "workspace.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace engine {

namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// What fine-tuning and embedding measure of their own run, for the manifest and the progress view:
// the seconds the model waited for decoded images (input_wait_seconds; near 0 when data loading
// keeps up), the rate over the second half of the images with the start-up left out
// (steady_images_per_s: CUDA's and cuDNN's first calls and autotuning, the first batches), and on
// CUDA the GPU memory in use beside the device.
class StageMeter {
 public:
  StageMeter(JobContext& ctx, const torch::Device& device, int64_t images)
      : m_ctx(ctx), m_device(device), m_label(ctx.snapshot().device), m_half(images / 2) {}
  // loader.next(batch), timed.
  bool next(BatchLoader& loader, Batch& batch) {
    const auto t = Clock::now();
    const bool more = loader.next(batch);
    m_inputWait += secondsSince(t);
    return more;
  }
  void add(int64_t images) {
    m_done += images;
    if (m_doneAtHalf < 0 && m_done >= m_half) {
      m_doneAtHalf = m_done;
      m_atHalf = Clock::now();
    }
  }
  // Call where the device has been synchronised anyway: a memory reading costs no wait there.
  void showDeviceMemory() {
    if (m_device.is_cuda()) m_ctx.setDevice(m_label + ", " + deviceMemoryNote(m_device));
  }
  // Once the last batch's results are back (on CUDA the loops end with a synchronising read).
  void finish() { m_end = Clock::now(); }
  // input_wait_seconds and steady_images_per_s (null when nothing came after the half).
  void record(json& stage) const {
    const double s = m_doneAtHalf < 0 ? 0 : std::chrono::duration<double>(m_end - m_atHalf).count();
    stage["input_wait_seconds"] = m_inputWait;
    stage["steady_images_per_s"] =
        s > 0 && m_done > m_doneAtHalf ? json((m_done - m_doneAtHalf) / s) : json(nullptr);
  }

 private:
  JobContext& m_ctx;
  const torch::Device m_device;
  const std::string m_label;  // the device as setupDevice described it
  const int64_t m_half;
  int64_t m_done = 0, m_doneAtHalf = -1;
  double m_inputWait = 0;
  Clock::time_point m_atHalf, m_end;
};

torch::Tensor normalizeInput(const torch::Tensor& x, const std::string& normalize) {
  if (normalize != "imagenet") return x;
  const auto opts = torch::TensorOptions().dtype(x.dtype()).device(x.device());
  const auto mean = torch::tensor({0.485f, 0.456f, 0.406f}, opts).view({1, 3, 1, 1});
  const auto stdv = torch::tensor({0.229f, 0.224f, 0.225f}, opts).view({1, 3, 1, 1});
  return (x - mean) / stdv;
}

json skippedJson(const std::vector<std::pair<int64_t, std::string>>& skipped,
                 const Dataset& data) {
  json out = json::array();
  for (const auto& [row, why] : skipped) out.push_back({{"path", data.paths[row]}, {"reason", why}});
  return out;
}

// --resume continues the run saved in WS/checkpoints/: its settings come from the checkpoint's
// note. A setting given now that differs from both the default and the saved value is a
// contradiction and an error (--epochs may grow; --device and --threads may change).
TrainConfig resumedConfig(const TrainConfig& given, const std::string& notePath,
                          const std::string& ckptPath) {
  if (!fileExists(ckptPath) || !fileExists(notePath))
    throw Error(ckptPath + ": no training checkpoint to resume from; run without --resume");
  json saved;
  try {
    saved = json::parse(readFileText(notePath)).at("config");
  } catch (const json::exception& e) {
    throw Error(notePath + ": unreadable (" + std::string(e.what()) +
                "); delete WS/checkpoints and run without --resume");
  }
  json now = toJson(given);
  const json defaults = toJson(TrainConfig{});
  if (now["weights"] == "none") now["weights"] = "";  // the saved form of a random start
  for (const char* key : {"data", "batch", "lr", "image_size", "weights", "limit", "normalize",
                          "precision"}) {
    const json& v = now.at(key);
    if (v != defaults.at(key) && v != saved.value(key, json()))
      throw Error("--" + std::string(key == std::string("image_size") ? "image-size" : key) + " " +
                  (v.is_string() ? v.get<std::string>() : v.dump()) + ": the checkpoint " +
                  ckptPath + " was saved with " + saved.value(key, json()).dump() +
                  "; resume with its settings, or run without --resume to start anew");
  }
  const json seedNow = now.at("run").at("seed"), seedSaved = saved.at("run").value("seed", json());
  if (seedNow != defaults.at("run").at("seed") && seedNow != seedSaved)
    throw Error("--seed " + seedNow.dump() + ": the checkpoint " + ckptPath + " was saved with " +
                seedSaved.dump() + "; resume with the same seed");
  TrainConfig c = given;
  try {
    c.data = saved.at("data").get<std::string>();
    c.batch = saved.at("batch").get<int>();
    c.lr = saved.at("lr").get<double>();
    c.imageSize = saved.at("image_size").get<int>();
    c.weights = saved.at("weights").get<std::string>();
    c.limit = saved.at("limit").get<int64_t>();
    c.normalize = saved.at("normalize").get<std::string>();
    c.precision = saved.at("precision").get<std::string>();
    c.run.seed = saved.at("run").at("seed").get<uint64_t>();
    if (given.epochs == TrainConfig{}.epochs) c.epochs = saved.at("epochs").get<int>();
  } catch (const json::exception& e) {
    throw Error(notePath + ": unreadable (" + std::string(e.what()) +
                "); delete WS/checkpoints and run without --resume");
  }
  if (c.weights.empty()) c.weights = "none";  // the saved run started random: keep it so
  return c;
}

}  // namespace

void runTrain(const TrainConfig& cfgIn, JobContext& ctx) {
  TrainConfig cfg = cfgIn;
  const std::string ckptPath = (fs::path(cfgIn.workspace) / "checkpoints" / "train.ckpt").string();
  const std::string notePath = (fs::path(cfgIn.workspace) / "checkpoints" / "train.json").string();
  if (cfg.resume) cfg = resumedConfig(cfgIn, notePath, ckptPath);
  // No --weights: torchvision's own ImageNet checkpoint when its hub cache has it; "none" forces
  // a random start.
  if (cfg.weights.empty()) cfg.weights = findTorchvisionResnet18();
  if (cfg.weights == "none") cfg.weights.clear();
  validate(cfg);
  checkPrecisionDevice(cfg.precision, cfg.run);
  // Check the data before creating anything: a wrong --data leaves no empty workspace behind.
  ctx.log("scanning " + cfg.data + " ...");
  const Dataset data = scanDataset(cfg.data);
  if (!cfg.resume && !cfg.weights.empty() && !fileExists(cfg.weights))
    throw Error("--weights " + cfg.weights + ": no such file");
  Workspace ws = Workspace::open(cfg.workspace, /*create=*/true);
  runStage(ws, "train", [&] {
    const auto start = Clock::now();
    const std::string started = isoNow();
    const torch::Device device = setupDevice(cfg.run, &ctx, cfg.precision);
    torch::manual_seed(cfg.run.seed);

    const int64_t n = cfg.limit > 0 ? std::min<int64_t>(cfg.limit, data.size()) : data.size();
    ctx.log("data set: " + std::to_string(n) + " images (" + data.layout + " layout) in " + data.root);

    ResNet18 model;
    std::string weightsNote = "random";
    if (cfg.resume) {
      weightsNote = "resumed from " + ckptPath;
    } else if (!cfg.weights.empty()) {
      const StateDict sd = readTensorFile(cfg.weights);
      loadStateDict(*model, sd, cfg.weights, {"fc.weight", "fc.bias"});
      weightsNote = fs::absolute(cfg.weights).string();
      ctx.log("backbone: ImageNet weights from " + cfg.weights);
    } else {
      ctx.log("backbone: random initialisation (no --weights given and no resnet18-f37072fd.pth in "
              "torch's hub cache; pass torchvision's resnet18 checkpoint to start from ImageNet)");
    }
    model->to(device);
    const at::ScalarType reduced = reducedType(cfg.precision);
    // fp16 scales the loss. SAESCOPE_TEST_LOSS_SCALING=1 scales it in any precision, so that tests
    // on the CPU run the same steps (and, with nothing overflowing, the same bits: the scale is a
    // power of two).
    const char* testScaling = std::getenv("SAESCOPE_TEST_LOSS_SCALING");
    const bool scaled = reduced == at::kHalf || (testScaling && std::string(testScaling) == "1");
    LossScaler scaler;
    const bool channelsLast = useChannelsLast(device, reduced != at::kFloat, cfg.imageSize);
    if (channelsLast) toChannelsLast(*model);
    model->train();
    const std::vector<torch::Tensor> params = model->parameters();
    torch::optim::Adam opt(params, torch::optim::AdamOptions(cfg.lr));

    std::vector<std::pair<int64_t, std::string>> skipped;
    int64_t step = 0;
    double last[3] = {NAN, NAN, NAN};
    double priorSeconds = 0;  // time spent before a resume
    int epoch = 0;            // position: the current epoch and the batches of it already done
    int64_t batchInEpoch = 0;
    const std::string logPath = ws.path("logs/train.jsonl");
    if (cfg.resume) {
      const json note = loadTrainingState(ckptPath, *model, opt, device);
      if (note.at("epoch").get<int>() > cfg.epochs)
        throw Error(ckptPath + ": already past --epochs " + std::to_string(cfg.epochs));
      epoch = note.at("epoch").get<int>();
      batchInEpoch = note.at("batch").get<int64_t>();
      step = note.at("step").get<int64_t>();
      priorSeconds = note.value("seconds", 0.0);
      if (scaled)
        scaler.restore(note.value("loss_scale", scaler.scale()), note.value("scale_growth", 0));
      for (int i = 0; i < 3; ++i) last[i] = note.at("last").at(i).is_number() ? note["last"][i].get<double>() : NAN;
      for (const auto& r : note.at("skipped")) skipped.emplace_back(r.at(0).get<int64_t>(), r.at(1).get<std::string>());
      truncateStepLog(logPath, step);
      ctx.log("train: resuming " + ckptPath + " at epoch " + std::to_string(epoch + 1) + ", step " +
              std::to_string(step));
    } else {
      std::error_code ec;
      fs::remove(logPath, ec);
      if (fileExists(ckptPath))
        ctx.log("note: " + ckptPath + " holds an interrupted run; this run starts anew (pass "
                "--resume to continue that one instead)");
    }
    LineAppender log(logPath);

    auto saveCheckpoint = [&] {
      json sk = json::array();
      for (const auto& [row, why] : skipped) sk.push_back({row, why});
      json lastJ = json::array();
      for (double v : last) lastJ.push_back(std::isfinite(v) ? json(v) : json(nullptr));
      json note = {{"config", toJson(cfg)},
                   {"epoch", epoch},
                   {"batch", batchInEpoch},
                   {"step", step},
                   {"last", lastJ},
                   {"skipped", sk},
                   {"seconds", priorSeconds + secondsSince(start)},
                   {"saved", isoNow()}};
      if (scaled)
        note["loss_scale"] = scaler.scale(), note["scale_growth"] = scaler.growthTracker();
      std::error_code ec;
      fs::create_directories(ws.path("checkpoints"), ec);
      // The note first (the settings, readable without LibTorch): a checkpoint never lacks one.
      writeFileAtomic(notePath, note.dump(2) + "\n");
      saveTrainingState(ckptPath, *model, opt, note);
    };
    const int64_t total = n * cfg.epochs;
    ctx.beginStage("train", total, "images");
    if (cfg.resume)  // the images of the epochs and batches done before
      ctx.skip(static_cast<int64_t>(epoch) * n + std::min<int64_t>(n, batchInEpoch * cfg.batch));
    auto lastSave = Clock::now();
    const int64_t firstStep = step;
    StageMeter meter(ctx, device, total - ctx.snapshot().done);  // this run's images (resumed)
    try {
      for (; epoch < cfg.epochs; ++epoch, batchInEpoch = 0) {
        LoaderConfig lc;
        lc.imageSize = cfg.imageSize;
        lc.batchSize = cfg.batch;
        lc.shuffle = true;
        lc.seed = cfg.run.seed;
        lc.epoch = epoch;
        lc.limit = n;
        lc.threads = cfg.run.threads;
        lc.startBatch = batchInEpoch;
        BatchLoader loader(data, lc);
        Batch batch;
        while (meter.next(loader, batch)) {
          ctx.checkStop();
          if (epoch == 0) skipped.insert(skipped.end(), batch.failures.begin(), batch.failures.end());
          for (const auto& f : batch.failures) ctx.log("skipped " + data.paths[f.first] + ": " + f.second);
          if (batch.size < 2) {  // a contrastive loss needs two images
            ctx.advance(batch.size + static_cast<int64_t>(batch.failures.size()));
            ++batchInEpoch;
            continue;
          }
          const int s = cfg.imageSize;
          torch::Tensor x = hostToDevice(batch.pixels.data(), {batch.size, 3, s, s}, device);
          x = normalizeInput(x, cfg.normalize);
          if (channelsLast) x = toChannelsLast(x);
          torch::Tensor e, eRot;
          {
            AutocastGuard autocast(device, reduced);
            e = model->forward(x);
            eRot = model->forward(x.flip({2, 3}));
          }
          // The losses in fp32 whatever the forward ran in (outside autocast, E Eᵀ included).
          const FineTuneLoss loss = fineTuneLoss(e.to(torch::kFloat32), eRot.to(torch::kFloat32));
          opt.zero_grad();
          (scaled ? loss.total * scaler.scale() : loss.total).backward();
          // A step whose scaled gradients overflowed is skipped (and the scale halved).
          if (!scaled || scaler.unscaleGradients(params))
            if (!fusedAdamStep(opt)) opt.step();
          const int64_t done = batch.size + static_cast<int64_t>(batch.failures.size());
          meter.add(done);
          // Reading a loss synchronises with the GPU: on CUDA only every few steps.
          if (!device.is_cuda() || step % 10 == 0 || loader.numBatches() * cfg.epochs <= step + 1) {
            last[0] = loss.total.item<double>();
            last[1] = loss.contrastive.item<double>();
            last[2] = loss.orientation.item<double>();
            if (!std::isfinite(last[0]))
              throw Error("train: the loss became " + std::to_string(last[0]) + " at step " +
                          std::to_string(step) + "; try a smaller --lr");
            ctx.advance(done, {{"loss", last[0]}, {"contrastive", last[1]}, {"orientation", last[2]}},
                        step);
            meter.showDeviceMemory();
            const JobContext::Timing snap = ctx.timing();
            json line{{"step", step},
                      {"epoch", epoch},
                      {"batch", batch.size},
                      {"loss", last[0]},
                      {"contrastive", last[1]},
                      {"orientation", last[2]},
                      {"images_per_s", snap.rate},
                      {"elapsed_s", snap.elapsed}};
            if (scaled) line["loss_scale"] = scaler.scale();
            log.appendLine(line.dump());
          } else {
            ctx.advance(done);
          }
          ++step;
          ++batchInEpoch;
          const bool bySteps = cfg.checkpointSteps > 0 && step % cfg.checkpointSteps == 0;
          if (bySteps || secondsSince(lastSave) >= cfg.checkpointMinutes * 60) {
            saveCheckpoint();
            lastSave = Clock::now();
          }
        }
      }
    } catch (const Cancelled&) {
      // Ctrl-C or the app's Cancel: keep the work done so far for --resume.
      if (step > firstStep) {
        saveCheckpoint();
        ctx.log("train: saved " + ckptPath + " at step " + std::to_string(step) +
                "; continue with --resume");
      }
      throw;
    }
    ctx.checkStop();
    if (step == 0 && cfg.epochs > 0)
      throw Error("train: no batch of at least 2 readable images in --data " + cfg.data);

    meter.finish();  // before the model is copied and written
    model->to(torch::kCPU);
    writeTorchCheckpoint(ws.backbonePath(), stateDictOf(*model));
    const double secs = priorSeconds + secondsSince(start);
    ws.updateManifest([&](json& m) {
      m["data_root"] = data.root;
      m["data_layout"] = data.layout;
      m["data_limit"] = cfg.limit;
      m["attributes_file"] = data.attributesFile;
      m["versions"]["torch"] = torchVersion();
      json& st = m["stages"]["train"];
      st = json{{"status", "done"},
                {"config", toJson(cfg)},
                {"started", started},
                {"finished", isoNow()},
                {"seconds", secs},
                {"images", n},
                {"steps", step},
                {"device", describeDevice(cfg.run)},
                {"weights", weightsNote},
                {"final", {{"loss", last[0]}, {"contrastive", last[1]}, {"orientation", last[2]}}},
                {"skipped", skippedJson(skipped, data)},
                {"summary", std::to_string(cfg.epochs) + " epoch(s), " + std::to_string(n) +
                                " images, " + formatDuration(secs)}};
      meter.record(st);
      if (scaled) {  // this run's (a resumed one's since the resume)
        st["loss_scale"] = scaler.scale();
        st["overflow_steps"] = scaler.overflows();
      }
      if (m["stages"].contains("embed")) m["stages"]["embed"]["stale"] = true;
    });
    std::error_code ec;
    fs::remove(ckptPath, ec);  // the stage is done: nothing left to resume
    fs::remove(notePath, ec);
    fs::remove(ws.path("checkpoints"), ec);  // only when empty
    ctx.log("train: done in " + formatDuration(secs) + ", final loss " + std::to_string(last[0]) +
            "; wrote " + ws.backbonePath());
  });
}

void runEmbed(const EmbedConfig& cfg, JobContext& ctx) {
  validate(cfg);
  checkPrecisionDevice(cfg.precision, cfg.run);
  Workspace ws = Workspace::open(cfg.workspace, /*create=*/false);
  runStage(ws, "embed", [&] {
    const auto start = Clock::now();
    const std::string started = isoNow();
    if (!ws.hasBackbone())
      throw Error(ws.backbonePath() + ": missing; run `saescope train --data DIR --workspace " +
                  ws.dir() + "` first");
    const json& m = ws.manifest();
    const json train = m.value("stages", json::object()).value("train", json::object());
    const std::string root = ws.dataRoot();
    if (root.empty())
      throw Error(ws.path("manifest.json") + ": no data_root recorded; run `saescope train` first");
    const int imageSize =
        cfg.imageSize > 0 ? cfg.imageSize : train.value("config", json::object()).value("image_size", 224);
    const std::string normalize =
        train.value("config", json::object()).value("normalize", std::string("none"));
    const int64_t limit = m.value("data_limit", int64_t{0});

    const torch::Device device = setupDevice(cfg.run, &ctx, cfg.precision);
    const Dataset data = scanDataset(root);
    const int64_t n = limit > 0 ? std::min<int64_t>(limit, data.size()) : data.size();

    ResNet18 model;
    loadStateDict(*model, readTensorFile(ws.backbonePath()), ws.backbonePath());
    // Embedding runs the whole model in the reduced type (no autocast: nothing to keep in fp32).
    const at::ScalarType reduced = reducedType(cfg.precision);
    model->to(device, reduced);
    const bool channelsLast = useChannelsLast(device, reduced != at::kFloat, imageSize);
    if (channelsLast) toChannelsLast(*model);
    model->eval();
    torch::InferenceMode inference;

    LoaderConfig lc;
    lc.imageSize = imageSize;
    lc.batchSize = cfg.batch;
    lc.limit = n;
    lc.threads = cfg.run.threads;
    BatchLoader loader(data, lc);
    std::vector<float> out;
    out.reserve(static_cast<size_t>(n) * 512);
    std::vector<std::string> kept;
    std::vector<std::pair<int64_t, std::string>> skipped;
    ctx.beginStage("embed", n, "images");
    StageMeter meter(ctx, device, n);
    int64_t collected = 0;
    // On CUDA one batch is in flight: its forward pass and the copy of its embeddings back to the
    // host run while the next batch is decoded and copied to pinned memory; the GPU is waited for
    // only after that (before, reading each batch's embeddings left the GPU idle meanwhile).
    torch::Tensor inFlight;  // embeddings [B, 512] on the host, filled once the device is synced
    std::vector<int64_t> inFlightRows;
    auto collect = [&] {
      if (!inFlight.defined()) return;
      if (device.is_cuda()) torch::cuda::synchronize(device.index());
      const torch::Tensor e = inFlight.contiguous();
      const float* p = e.data_ptr<float>();
      out.insert(out.end(), p, p + e.numel());
      for (int64_t row : inFlightRows) kept.push_back(data.paths[row]);
      inFlight = torch::Tensor();
      if (collected++ % 10 == 0) meter.showDeviceMemory();
    };
    Batch batch;
    while (meter.next(loader, batch)) {
      ctx.checkStop();
      for (const auto& f : batch.failures) {
        skipped.push_back(f);
        ctx.log("skipped " + data.paths[f.first] + ": " + f.second);
      }
      if (batch.size > 0) {
        torch::Tensor x =
            hostToDevice(batch.pixels.data(), {batch.size, 3, imageSize, imageSize}, device);
        x = normalizeInput(x, normalize);
        if (reduced != at::kFloat) x = x.to(reduced);
        if (channelsLast) x = toChannelsLast(x);
        collect();  // the previous batch, computed while this one was loaded
        inFlight = model->forward(x).to(torch::kCPU, torch::kFloat32,
                                        /*non_blocking=*/device.is_cuda());
        inFlightRows = batch.indices;
      }
      ctx.advance(batch.size + static_cast<int64_t>(batch.failures.size()));
      meter.add(batch.size + static_cast<int64_t>(batch.failures.size()));
    }
    collect();
    meter.finish();
    ctx.checkStop();
    if (kept.empty()) throw Error("embed: no readable image in " + root);

    const int64_t rows = static_cast<int64_t>(kept.size());
    writeNpy(ws.embeddingsPath(), TensorData::fromFloat({rows, 512}, out.data()));
    writeImageList(ws.imagesPath(), kept);
    removeTree(ws.path("index"));  // cached top-k lists belong to the old embeddings
    const double secs = secondsSince(start);
    ws.updateManifest([&](json& mm) {
      mm["image_count"] = rows;
      json& st = mm["stages"]["embed"];
      st = json{{"status", "done"},
                {"config", toJson(cfg)},
                {"image_size", imageSize},
                {"started", started},
                {"finished", isoNow()},
                {"seconds", secs},
                {"images", rows},
                {"device", describeDevice(cfg.run)},
                {"skipped", skippedJson(skipped, data)},
                {"summary", std::to_string(rows) + " embeddings, " + formatDuration(secs)}};
      meter.record(st);
      if (mm["stages"].contains("sae")) mm["stages"]["sae"]["stale"] = true;
    });
    ctx.log("embed: " + std::to_string(rows) + " embeddings in " + formatDuration(secs) +
            (skipped.empty() ? "" : ", " + std::to_string(skipped.size()) + " unreadable images skipped") +
            "; wrote " + ws.embeddingsPath());
  });
}

}  // namespace engine
