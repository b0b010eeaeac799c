#include "layerprobe/core/common.hpp"

#include <torch/torch.h>

#include <cstdlib>
#include <iostream>
#include <limits>
#include <new>

#include "test_support.hpp"

using namespace layerprobe;

TEST(WriteFileAtomically, WritesContentAndLeavesNoTemporary) {
  auto dir = test_support::scratch_dir("common_atomic");
  write_file_atomically(dir / "sub" / "out.txt", "hello");
  EXPECT_EQ(read_file(dir / "sub" / "out.txt"), "hello");
  size_t files = 0;
  for (auto& entry : std::filesystem::directory_iterator(dir / "sub")) files += entry.is_regular_file();
  EXPECT_EQ(files, 1u);
}

TEST(WriteFileAtomically, UnwritableDirectoryIsAnErrorNamingThePath) {
  try {
    write_file_atomically("/proc/layerprobe-no-such/out.txt", "x");
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/proc/layerprobe-no-such"), std::string::npos) << e.what();
  }
}

TEST(ReadFile, MissingFileNamesIt) {
  try {
    read_file("/nonexistent/layerprobe.txt");
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/layerprobe.txt"), std::string::npos);
  }
}

TEST(ConfigureThreads, ExplicitCountWinsAndEnvironmentIsValidated) {
  EXPECT_EQ(configure_threads(1), 1);
  EXPECT_EQ(torch::get_num_threads(), 1);
  setenv("LAYERPROBE_THREADS", "banana", 1);
  EXPECT_THROW(configure_threads(0), Error);
  setenv("LAYERPROBE_THREADS", "2", 1);
  EXPECT_EQ(configure_threads(0), 2);
  unsetenv("LAYERPROBE_THREADS");
}

TEST(ConfigureThreads, CountsBeyondFourPerCoreAreUsageErrors) {
  // Thousands of threads on a 2-core machine kept SIGTERM waiting for a minute (issue #29).
  const int most = max_threads();
  EXPECT_GE(most, 8);
  EXPECT_LE(most, 4096);
  for (int threads : {most + 1, 100000}) {
    try {
      configure_threads(threads);
      FAIL() << threads << " threads were accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.exit_code(), 2);
      EXPECT_NE(std::string(e.what()).find("--threads " + std::to_string(threads)), std::string::npos) << e.what();
    }
  }
  for (const char* value : {"100000", "-3", "99999999999999999999", "0"}) {
    setenv("LAYERPROBE_THREADS", value, 1);
    EXPECT_THROW(configure_threads(0), Error) << value;
  }
  unsetenv("LAYERPROBE_THREADS");
}

TEST(DescribeException, LibTorchErrorsLoseTheirBacktrace) {
  try {
    torch::zeros({2, 3}).view({7});
    FAIL() << "expected LibTorch to refuse the view";
  } catch (const std::exception& e) {
    const std::string text = describe_exception(e);
    EXPECT_NE(text.find("shape '[7]' is invalid"), std::string::npos) << text;
    EXPECT_EQ(text.find("frame #"), std::string::npos) << text;
    EXPECT_EQ(text.find("Exception raised from"), std::string::npos) << text;
  }
  EXPECT_NE(describe_exception(std::bad_alloc()).find("out of memory"), std::string::npos);
}

#include "layerprobe/core/finite.hpp"
#include "layerprobe/core/json.hpp"

TEST(CheckFinite, NamesTheTensorTheSourceAndTheFirstBadValue) {
  auto tensor = torch::zeros({2, 3});
  EXPECT_NO_THROW(check_finite(tensor, "w", "file.safetensors"));
  EXPECT_NO_THROW(check_finite(torch::zeros({0}), "empty", "file.safetensors"));
  EXPECT_NO_THROW(check_finite(torch::full({2}, 7, torch::kInt64), "ids", "file.safetensors"));
  tensor[1][2] = -std::numeric_limits<float>::infinity();
  tensor[1][0] = std::numeric_limits<float>::quiet_NaN();
  try {
    check_finite(tensor, "encoder.weight", "model.safetensors");
    FAIL() << "non-finite values passed";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).substr(0, std::string(e.what()).find(" (the")),
              "model.safetensors: tensor 'encoder.weight' holds 2 non-finite values of 6");
    EXPECT_NE(std::string(e.what()).find("the first: nan at [1, 0]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(check_finite(torch::full({1}, std::numeric_limits<double>::infinity(), torch::kBFloat16), "b", "f"), Error);
}

// check_finite reads large tensors in slices (bounded memory): a bad value in the last slice, and in a
// non-contiguous view, is still found and placed.
TEST(CheckFinite, FindsABadValueInTheLastSliceOfALargeTensor) {
  auto tensor = torch::zeros({3, 1000003}, torch::kBFloat16);
  EXPECT_NO_THROW(check_finite(tensor, "embed", "model.safetensors"));
  tensor[2][1000002] = std::numeric_limits<float>::infinity();
  try {
    check_finite(tensor, "embed", "model.safetensors");
    FAIL() << "an inf in the last slice passed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds 1 non-finite value of 3000009 (the first: inf at [2, 1000002])"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(check_finite(tensor.t(), "embed.T", "f"), Error);
}

TEST(ParseJson, SyntaxErrorsGiveLineAndColumn) {
  const auto error = [](const std::string& text) {
    try {
      parse_json(text, "config.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(parse_json("{\"a\": [1, 2]}", "x").at("a").size(), 2u);
  EXPECT_NE(error("{\n  \"hidden_size\": NaN\n}").find("config.json: not valid JSON at line 2, column 18: "),
            std::string::npos) << error("{\n  \"hidden_size\": NaN\n}");
  EXPECT_NE(error("{\"a\": 1,\n\"b\": 2,,\n}").find("at line 2, column 8"), std::string::npos)
      << error("{\"a\": 1,\n\"b\": 2,,\n}");
  EXPECT_NE(error("{\"a\": 1e999}").find("config.json: not valid JSON"), std::string::npos);
  EXPECT_NE(error("").find("at line 1, column 1"), std::string::npos) << error("");
}

TEST(ParseJson, AKeyGivenTwiceInOneObjectIsAnError) {
  const std::string twice = "{\"num_hidden_layers\": 12, \"x\": {\"a\": 1}, \"num_hidden_layers\": 2}";
  try {
    parse_json(twice, "config.json");
    FAIL() << "a duplicated key passed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json: key 'num_hidden_layers' appears twice in the top-level object"),
              std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_json("{\"x\": {\"a\": 1, \"a\": 2}}", "f"), Error);
  // The same key in different objects is fine, and a reader that wants the last value may ask for it.
  EXPECT_NO_THROW(parse_json("{\"x\": {\"a\": 1}, \"y\": {\"a\": 2}, \"a\": [{\"a\": 3}, {\"a\": 4}]}", "f"));
  EXPECT_EQ(parse_json(twice, "f", /*reject_duplicate_keys=*/false).at("num_hidden_layers"), 2);
}

#include "layerprobe/text/sentencepiece.hpp"

// The bridge exists because libsentencepiece and libtorch cannot share a
// symbol namespace; this checks both work in one process.
TEST(SentencePieceBridge, EncodesInAProcessThatAlsoUsesTorch) {
  REQUIRE_SHARED(test_support::kSpieceModel);
  SentencePieceModel model(test_support::shared_path(test_support::kSpieceModel));
  EXPECT_EQ(model.size(), 30000);
  auto pieces = model.encode("hello world");
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_EQ(pieces[0], "\xE2\x96\x81hello");
  EXPECT_EQ(model.id_to_piece(2), "[CLS]");
  EXPECT_EQ(model.piece_to_id("[SEP]"), 3);
  EXPECT_EQ(torch::ones({3}).sum().item<float>(), 3.0f);
}

TEST(SentencePieceBridge, MissingModelNamesTheFile) {
  try {
    SentencePieceModel model("/nonexistent/spiece.model");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/spiece.model"), std::string::npos);
  }
}

// Debian's OpenBLAS takes AVX-512 CPUs it does not know for Prescott (SSE3 kernels); configure_threads gives
// it SkylakeX's (Haswell's on AVX2) unless OPENBLAS_CORETYPE says otherwise.
TEST(ConfigureThreads, OpenBlasRunsKernelsForThisCpuNotPrescott) {
  configure_threads(1);
  const std::string core = openblas_core();
  if (core.empty()) GTEST_SKIP() << "LibTorch's BLAS is not OpenBLAS";
  const char* forced = std::getenv("OPENBLAS_CORETYPE");
  std::cout << "OpenBLAS core " << core << " (OPENBLAS_CORETYPE " << (forced ? forced : "unset") << ")\n";
  if (forced && std::string(forced) == "Prescott") GTEST_SKIP() << "OPENBLAS_CORETYPE=Prescott asks for it";
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) EXPECT_NE(core, "Prescott");
}
