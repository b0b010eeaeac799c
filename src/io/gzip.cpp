#include "layerprobe/io/gzip.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <memory>

#include "layerprobe/core/common.hpp"

namespace layerprobe {

namespace {

Error damaged(const std::filesystem::path& path, const std::string& why) {
  return Error("cannot decompress '" + path.string() + "' (" + why + "); the file is damaged or truncated");
}

// The members of a gzip stream, one after another (as `cat a.gz b.gz` makes).
// inflate itself rather than gzread: zlib 1.3.2's gzread ends a truncated or
// undecodable stream quietly, as if it were complete.
std::string inflate_gzip(const std::string& compressed, const std::filesystem::path& path) {
  z_stream stream{};
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) throw damaged(path, "zlib could not start");
  std::unique_ptr<z_stream, int (*)(z_streamp)> end(&stream, inflateEnd);
  const auto* next = reinterpret_cast<const Bytef*>(compressed.data());
  size_t left = compressed.size();
  std::string content;
  std::array<char, 1 << 16> buffer;
  for (;;) {
    if (stream.avail_in == 0 && left > 0) {  // avail_in is 32 bits wide
      stream.next_in = const_cast<Bytef*>(next);
      stream.avail_in = static_cast<uInt>(std::min<size_t>(left, size_t{1} << 30));
      next += stream.avail_in;
      left -= stream.avail_in;
    }
    stream.next_out = reinterpret_cast<Bytef*>(buffer.data());
    stream.avail_out = static_cast<uInt>(buffer.size());
    const int status = inflate(&stream, Z_NO_FLUSH);
    content.append(buffer.data(), buffer.size() - stream.avail_out);
    if (status == Z_STREAM_END) {
      if (stream.avail_in == 0 && left == 0) return content;
      if (inflateReset(&stream) != Z_OK) throw damaged(path, "zlib could not restart");
    } else if (status == Z_BUF_ERROR) {  // no progress possible: the input ended inside a member
      throw damaged(path, "unexpected end of file");
    } else if (status != Z_OK) {
      throw damaged(path, stream.msg != nullptr ? stream.msg : zError(status));
    }
  }
}

}  // namespace

std::string read_gzip_file(const std::filesystem::path& path) {
  std::string content = read_file(path);
  const bool gzip = content.size() >= 2 && content[0] == '\x1f' && content[1] == '\x8b';
  return gzip ? inflate_gzip(content, path) : content;
}

}  // namespace layerprobe
