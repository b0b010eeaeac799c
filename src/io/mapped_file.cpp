#include "layerprobe/io/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <torch/torch.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>

#include "layerprobe/core/common.hpp"

namespace layerprobe {

namespace {

// The live mappings' address ranges, so release_mapped_pages touches only memory that is a file's.
std::mutex g_mappings_mutex;
std::map<uintptr_t, size_t> g_mappings;  // begin -> size

}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error("cannot open '" + path.string() + "': " + std::strerror(errno));
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    const int saved = errno;
    ::close(fd);
    throw Error("cannot read '" + path.string() + "': " + (saved ? std::strerror(saved) : "not a regular file"));
  }
  const auto size = static_cast<size_t>(info.st_size);
  void* data = nullptr;
  if (size > 0) {
    // Private and writable: a tensor over the mapping may be updated in place (copy-on-write, never the file).
    data = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (data == MAP_FAILED) {
      const int saved = errno;
      ::close(fd);
      throw Error("cannot map '" + path.string() + "' into memory: " + std::strerror(saved));
    }
  }
  ::close(fd);  // the mapping keeps the file
  if (data != nullptr) {
    std::lock_guard<std::mutex> lock(g_mappings_mutex);
    g_mappings[reinterpret_cast<uintptr_t>(data)] = size;
  }
  return std::shared_ptr<MappedFile>(new MappedFile(path, data, size));
}

MappedFile::~MappedFile() {
  if (data_ == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(g_mappings_mutex);
    g_mappings.erase(reinterpret_cast<uintptr_t>(data_));
  }
  ::munmap(data_, size_);
}

void release_mapped_pages(const torch::Tensor& tensor) {
  if (!tensor.defined() || !tensor.is_cpu() || !tensor.is_contiguous() || tensor.numel() == 0) return;
  const auto begin = reinterpret_cast<uintptr_t>(tensor.data_ptr());
  const uintptr_t end = begin + static_cast<uintptr_t>(tensor.numel()) * tensor.element_size();
  std::lock_guard<std::mutex> lock(g_mappings_mutex);
  auto it = g_mappings.upper_bound(begin);
  if (it == g_mappings.begin()) return;
  --it;
  if (end > it->first + it->second) return;  // not inside this mapping
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t first = (begin + page - 1) / page * page, last = end / page * page;
  if (first < last) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

torch::Tensor tensor_over(const std::shared_ptr<MappedFile>& file, size_t offset, torch::IntArrayRef sizes,
                          torch::Dtype dtype) {
  const auto options = torch::TensorOptions().dtype(dtype);
  char* data = const_cast<char*>(file->bytes().data()) + offset;
  const auto element = static_cast<uintptr_t>(torch::elementSize(dtype));
  int64_t numel = 1;
  for (int64_t size : sizes) numel *= size;
  if (numel == 0) return torch::empty(sizes, options);
  if (reinterpret_cast<uintptr_t>(data) % element != 0) {
    auto copy = torch::empty(sizes, options);
    std::memcpy(copy.data_ptr(), data, static_cast<size_t>(numel) * element);
    return copy;
  }
  auto keep = file;
  return torch::from_blob(data, sizes, [keep](void*) mutable { keep.reset(); }, options);
}

}  // namespace layerprobe
