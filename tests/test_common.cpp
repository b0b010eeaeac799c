#include "layerprobe/core/common.hpp"

#include <torch/torch.h>

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
