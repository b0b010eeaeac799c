// A file mapped into memory read-only from disk and copy-on-write in memory
// (mmap MAP_PRIVATE): tensors read from a large checkpoint can point into it
// instead of holding a copy, so only the pages a run touches become resident,
// and writing to such a tensor (training) copies just the pages it writes.
#pragma once

#include <torch/types.h>

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string_view>

namespace layerprobe {

class MappedFile {
 public:
  // Error naming the file when it cannot be opened or mapped. An empty file maps to no bytes.
  static std::shared_ptr<MappedFile> open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::string_view bytes() const { return {static_cast<const char*>(data_), size_}; }
  const std::filesystem::path& path() const { return path_; }

 private:
  MappedFile(std::filesystem::path path, void* data, size_t size) : path_(std::move(path)), data_(data), size_(size) {}
  std::filesystem::path path_;
  void* data_ = nullptr;
  size_t size_ = 0;
};

// A CPU tensor of `sizes` and `dtype` over the file's bytes from `offset`, keeping the mapping
// alive while any view of it lives; a copy when those bytes are not aligned for the dtype.
torch::Tensor tensor_over(const std::shared_ptr<MappedFile>& file, size_t offset, torch::IntArrayRef sizes,
                          torch::Dtype dtype);

// Where `tensor` lies in a live MappedFile, drops the whole pages it spans from memory (they
// are read from the file again if touched; nothing was written to them): after copying a
// mapped tensor elsewhere (say, widened to float32), so the copy and the file's pages are not
// resident together. Does nothing for any other tensor.
void release_mapped_pages(const torch::Tensor& tensor);

}  // namespace layerprobe
