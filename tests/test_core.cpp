#include <doctest/doctest.h>

#include "engine/error.h"
#include "engine/fsutil.h"
#include "engine/job.h"
#include "test_helpers.h"

TEST_CASE("writeFileAtomic replaces a file whole and leaves no temporary") {
  testutil::TempDir dir("fs");
  const std::string p = dir.str("sub/a.txt");
  engine::writeFileAtomic(p, std::string("one"));
  engine::writeFileAtomic(p, std::string("two"));
  CHECK(engine::readFileText(p) == "two");
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.str("sub"))) (void)e, ++files;
  CHECK(files == 1);
}

TEST_CASE("JobContext reports progress and honours stop") {
  engine::JobContext ctx;
  ctx.beginStage("train", 100, "images");
  ctx.advance(10, {{"loss", 1.5}}, 0);
  auto s = ctx.snapshot();
  CHECK(s.stage == "train");
  CHECK(s.done == 10);
  CHECK(s.latest.at("loss") == doctest::Approx(1.5));
  CHECK(s.curve.size() == 1);
  CHECK_NOTHROW(ctx.checkStop());
  ctx.requestStop();
  CHECK_THROWS_AS(ctx.checkStop(), engine::Cancelled);
}

TEST_CASE("formatDuration") {
  CHECK(engine::formatDuration(65) == "01:05");
  CHECK(engine::formatDuration(3725) == "1:02:05");
  CHECK(engine::formatDuration(-1) == "--:--");
}
