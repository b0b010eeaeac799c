#include <torch/torch.h>

#include <cstring>
#include <random>

#include "layerprobe/core/common.hpp"
#include "layerprobe/io/safetensors.hpp"
#include "layerprobe/io/torch_pickle.hpp"
#include "test_support.hpp"

using namespace layerprobe;

namespace {

std::string str(const char* bytes, size_t n) { return std::string(bytes, n); }
std::string binunicode(const std::string& s) {
  std::string out = "X";
  uint32_t n = s.size();
  out.append(reinterpret_cast<const char*>(&n), 4);
  return out + s;
}

// A legacy torch.save file of {"w": tensor [2,2] over a 4-element
// FloatStorage '0'}, built opcode by opcode as torch.save writes it.
struct LegacyFixture {
  std::string size_tuple = "K\x02K\x02\x86";
  std::string storage_numel = "K\x04";
  int64_t count_prefix = 4;
  std::vector<float> values = {1.f, 2.f, 3.f, 4.f};

  std::string bytes() const {
    std::string magic = "\x80\x02\x8a\x0a" + str("\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 10) + ".";
    std::string protocol = "\x80\x02M\xe9\x03.";
    std::string sys_info = "\x80\x02}(" + binunicode("little_endian") + "\x88u.";
    std::string pid = "(" + binunicode("storage") + "ctorch\nFloatStorage\n" + binunicode("0") + binunicode("cpu") +
                      storage_numel + "NtQ";
    std::string state = str("\x80\x02", 2) + "ccollections\nOrderedDict\n)R" + binunicode("w") +
                        "ctorch._utils\n_rebuild_tensor_v2\n(" + pid + str("K\x00", 2) + size_tuple +
                        "K\x02K\x01\x86\x89)tRs.";
    std::string keys = "\x80\x02]" + binunicode("0") + "a.";
    std::string data(reinterpret_cast<const char*>(&count_prefix), 8);
    data.append(reinterpret_cast<const char*>(values.data()), values.size() * 4);
    return magic + protocol + sys_info + state + keys + data;
  }
};

std::string legacy_error(const std::string& bytes) {
  try {
    parse_torch_legacy(bytes, "model.bin");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(TorchPickle, HandBuiltLegacyFileParses) {
  TensorMap tensors = parse_torch_legacy(LegacyFixture().bytes(), "model.bin");
  ASSERT_EQ(tensors.size(), 1u);
  EXPECT_TRUE(torch::equal(tensors.at("w"), torch::tensor({{1.f, 2.f}, {3.f, 4.f}})));
  EXPECT_EQ(parse_torch_checkpoint(LegacyFixture().bytes(), "model.bin").size(), 1u);
}

TEST(TorchPickle, ViewOutsideItsStorageIsAnError) {
  LegacyFixture fixture;
  fixture.size_tuple = "K\x03K\x02\x86";
  std::string message = legacy_error(fixture.bytes());
  EXPECT_NE(message.find("tensor 'w'"), std::string::npos) << message;
  EXPECT_NE(message.find("of a storage with 4 elements"), std::string::npos) << message;
}

TEST(TorchPickle, StorageCountMismatchIsAnError) {
  LegacyFixture fixture;
  fixture.count_prefix = 5;
  EXPECT_NE(legacy_error(fixture.bytes()).find("has 5 elements, expected 4"), std::string::npos);
}

TEST(TorchPickle, HugeDeclaredStorageDoesNotAllocate) {
  LegacyFixture fixture;
  fixture.storage_numel = "J\xff\xff\xff\x7f";  // 2^31-1 floats declared, 16 bytes present
  fixture.count_prefix = 0x7fffffff;
  EXPECT_NE(legacy_error(fixture.bytes()).find("runs past the end of the file"), std::string::npos);
}

TEST(TorchPickle, WrongMagicAndUnknownOpcode) {
  EXPECT_NE(legacy_error("\x80\x02K\x01.").find("wrong magic number"), std::string::npos);
  std::string message = legacy_error("\x80\x02\xff");
  EXPECT_NE(message.find("unsupported pickle opcode 0xff"), std::string::npos) << message;
  EXPECT_NE(legacy_error(str("\x80\x02h\x05.", 5)).find("memo reference to an unset slot"), std::string::npos);
  EXPECT_NE(legacy_error("\x80\x02.").find("stack underflow"), std::string::npos);
}

TEST(TorchPickle, EveryTruncationIsAnError) {
  const std::string bytes = LegacyFixture().bytes();
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    SCOPED_TRACE(cut);
    EXPECT_NE(legacy_error(bytes.substr(0, cut)), "");
  }
}

TEST(TorchPickle, NotATorchFile) {
  try {
    parse_torch_checkpoint("hello", "x.bin");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a torch.save file"), std::string::npos);
  }
  try {
    parse_torch_checkpoint(str("PK\x03\x04garbage", 11), "x.bin");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a readable zip archive"), std::string::npos) << e.what();
  }
}

class GoldenTorchFiles : public ::testing::TestWithParam<const char*> {};

TEST_P(GoldenTorchFiles, MatchTheSafetensorsWeightsExactly) {
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  const auto dir = test_support::shared_path("golden/albert-tiny");
  const auto expected = read_safetensors(dir / "model.safetensors").tensors;
  const TensorMap tensors = read_torch_checkpoint(dir / GetParam());
  ASSERT_EQ(tensors.size(), expected.size());
  for (const auto& [name, tensor] : expected) {
    ASSERT_TRUE(tensors.count(name)) << name;
    EXPECT_TRUE(torch::equal(tensors.at(name), tensor)) << name;
  }
}

// Damaged copies must give an Error (or, when only tensor data changed, a
// result) but never a crash, an over-read or another exception type.
TEST_P(GoldenTorchFiles, DamagedCopiesNeverCrash) {
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  const std::string bytes = read_file(test_support::shared_path("golden/albert-tiny") / GetParam());
  std::mt19937 rng(7);
  auto attempt = [](const std::string& damaged) {
    try {
      parse_torch_checkpoint(damaged, "damaged.bin");
    } catch (const Error&) {
    }
  };
  for (int i = 0; i < 60; ++i) {
    size_t cut = std::uniform_int_distribution<size_t>(0, bytes.size())(rng);
    EXPECT_NO_THROW(attempt(bytes.substr(0, cut))) << "cut at " << cut;
  }
  for (int i = 0; i < 150; ++i) {
    std::string damaged = bytes;
    // Mostly the pickle and zip structures, which sit at the start and end.
    size_t span = 6000;
    size_t pos = std::uniform_int_distribution<size_t>(0, 2 * span)(rng);
    pos = pos < span ? pos : bytes.size() - 1 - (pos - span);
    damaged[pos] = static_cast<char>(std::uniform_int_distribution<int>(0, 255)(rng));
    EXPECT_NO_THROW(attempt(damaged)) << "byte " << pos;
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, GoldenTorchFiles, ::testing::Values("pytorch_model.bin", "pytorch_model_legacy.bin"));
