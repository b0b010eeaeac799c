#include <torch/torch.h>

#include <cstring>

#include "layerprobe/core/common.hpp"
#include "layerprobe/io/safetensors.hpp"
#include "test_support.hpp"

using namespace layerprobe;

namespace {

// A file from a literal header and `data_size` zero bytes of data.
std::string make_file(const std::string& header, size_t data_size) {
  std::string out(8, '\0');
  uint64_t size = header.size();
  std::memcpy(out.data(), &size, 8);
  return out + header + std::string(data_size, '\0');
}

// The message of the Error parsing `bytes` throws ("" when it parses).
std::string parse_error(const std::string& bytes) {
  try {
    parse_safetensors(bytes, "bad.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Safetensors, RoundTripKeepsDtypesShapesValuesAndMetadata) {
  torch::manual_seed(0);
  std::map<std::string, torch::Tensor> tensors = {
      {"f32", torch::randn({3, 4})},
      {"f16", torch::randn({5}).to(torch::kFloat16)},
      {"bf16", torch::randn({2, 2}).to(torch::kBFloat16)},
      {"i64", torch::arange(7, torch::kLong).view({7, 1})},
      {"empty", torch::zeros({0, 3})},
      {"scalar", torch::tensor(2.5)},
      {"strided", torch::randn({4, 3}).t()},
  };
  std::string bytes = serialize_safetensors(tensors, {{"format", "pt"}, {"note", "x"}});
  uint64_t header_size = 0;
  std::memcpy(&header_size, bytes.data(), 8);
  EXPECT_EQ((8 + header_size) % 8, 0u) << "data area must start 8-byte aligned";

  SafetensorsFile file = parse_safetensors(bytes, "memory");
  EXPECT_EQ(file.metadata, (std::map<std::string, std::string>{{"format", "pt"}, {"note", "x"}}));
  ASSERT_EQ(file.tensors.size(), tensors.size());
  for (const auto& [name, tensor] : tensors) {
    const torch::Tensor& read = file.tensors.at(name);
    EXPECT_EQ(read.scalar_type(), tensor.scalar_type()) << name;
    EXPECT_EQ(read.sizes(), tensor.sizes()) << name;
    EXPECT_TRUE(torch::equal(read, tensor)) << name;
  }
}

TEST(Safetensors, WriteIsAtomicAndReadable) {
  auto dir = test_support::scratch_dir("safetensors_write");
  write_safetensors(dir / "a.safetensors", {{"x", torch::ones({2})}});
  EXPECT_TRUE(torch::equal(read_safetensors(dir / "a.safetensors").tensors.at("x"), torch::ones({2})));
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(entry.path().filename(), "a.safetensors") << "temporary file left behind";
}

TEST(Safetensors, GoldenFileHeaderAndValues) {
  REQUIRE_SHARED("golden/albert-tiny/model.safetensors");
  auto file = read_safetensors(test_support::shared_path("golden/albert-tiny/model.safetensors"));
  EXPECT_EQ(file.metadata.at("format"), "pt");
  EXPECT_EQ(file.tensors.at("albert.embeddings.word_embeddings.weight").sizes(), (std::vector<int64_t>{30000, 32}));
  EXPECT_EQ(file.tensors.size(), 27u);  // 5 embedding + 2 projection + 16 layer + 2 pooler + 2 QA
}

TEST(Safetensors, TruncatedFileIsAClearError) {
  EXPECT_NE(parse_error("abc").find("truncated safetensors file"), std::string::npos);
  EXPECT_NE(parse_error("").find("truncated safetensors file"), std::string::npos);
}

TEST(Safetensors, HeaderLengthPastEndOfFile) {
  std::string bytes = make_file("{}", 0);
  uint64_t huge = 1ull << 62;
  std::memcpy(bytes.data(), &huge, 8);
  EXPECT_NE(parse_error(bytes).find("runs past the end of the file"), std::string::npos) << parse_error(bytes);
}

TEST(Safetensors, InvalidJson) {
  EXPECT_NE(parse_error(make_file("{\"a\": [1, 2", 0)).find("not valid JSON"), std::string::npos);
  EXPECT_NE(parse_error(make_file("[1, 2]", 0)).find("not a JSON object"), std::string::npos);
}

TEST(Safetensors, OverlappingOffsets) {
  std::string header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  std::string message = parse_error(make_file(header, 12));
  EXPECT_NE(message.find("overlap"), std::string::npos) << message;
  EXPECT_NE(message.find("'b'"), std::string::npos) << message;
}

TEST(Safetensors, OffsetsPastTheEnd) {
  std::string header = R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  std::string message = parse_error(make_file(header, 8));
  EXPECT_NE(message.find("run past the end of the data area"), std::string::npos) << message;
  EXPECT_NE(message.find("'a'"), std::string::npos) << message;
}

TEST(Safetensors, OffsetsEndBeforeBegin) {
  std::string header = R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})";
  EXPECT_NE(parse_error(make_file(header, 8)).find("end before they begin"), std::string::npos);
}

TEST(Safetensors, ByteCountMismatch) {
  std::string header = R"({"a":{"dtype":"F16","shape":[3],"data_offsets":[0,12]}})";
  std::string message = parse_error(make_file(header, 12));
  EXPECT_NE(message.find("byte count mismatch"), std::string::npos) << message;
  EXPECT_NE(message.find("needs 6 bytes"), std::string::npos) << message;
}

TEST(Safetensors, UnknownDtypeAndBadShape) {
  std::string unknown = R"({"a":{"dtype":"F8_E9","shape":[1],"data_offsets":[0,1]}})";
  EXPECT_NE(parse_error(make_file(unknown, 1)).find("unsupported dtype 'F8_E9'"), std::string::npos);
  std::string negative = R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})";
  EXPECT_NE(parse_error(make_file(negative, 4)).find("not a non-negative integer"), std::string::npos);
  std::string overflow =
      R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}})";
  EXPECT_NE(parse_error(make_file(overflow, 4)).find("overflows"), std::string::npos);
  std::string missing = R"({"a":{"dtype":"F32","shape":[1]}})";
  EXPECT_NE(parse_error(make_file(missing, 4)).find("lacks 'data_offsets'"), std::string::npos);
}

TEST(Safetensors, HolesAndTrailingBytes) {
  std::string gap = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  EXPECT_NE(parse_error(make_file(gap, 8)).find("gap in the data area"), std::string::npos);
  std::string trailing = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  EXPECT_NE(parse_error(make_file(trailing, 12)).find("trailing bytes"), std::string::npos);
}

TEST(Safetensors, BadMetadata) {
  std::string header = R"({"__metadata__":{"a":1}})";
  EXPECT_NE(parse_error(make_file(header, 0)).find("__metadata__ value for 'a' is not a string"), std::string::npos);
}

TEST(Safetensors, EveryTruncationOfARealFileIsAnError) {
  std::string bytes = serialize_safetensors({{"w", torch::randn({8, 8})}, {"b", torch::randn({8})}});
  for (size_t cut = 0; cut < bytes.size(); cut += 7) {
    SCOPED_TRACE(cut);
    EXPECT_NE(parse_error(bytes.substr(0, cut)), "");
  }
}

TEST(Safetensors, ErrorNamesTheFile) {
  auto dir = test_support::scratch_dir("safetensors_name");
  write_file_atomically(dir / "broken.safetensors", "xyz");
  try {
    read_safetensors(dir / "broken.safetensors");
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("broken.safetensors"), std::string::npos);
  }
}
