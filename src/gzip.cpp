#include "layerprobe/gzip.hpp"

#include <zlib.h>

#include <memory>

#include "layerprobe/common.hpp"

namespace layerprobe {

std::string read_gzip_file(const std::filesystem::path& path) {
  std::unique_ptr<gzFile_s, int (*)(gzFile)> file(gzopen(path.c_str(), "rb"), gzclose);
  if (!file) throw Error("cannot open '" + path.string() + "' for reading");
  std::string content;
  char buffer[1 << 16];
  int n = 0;
  while ((n = gzread(file.get(), buffer, sizeof buffer)) > 0) content.append(buffer, static_cast<size_t>(n));
  // A truncated or corrupt stream ends the loop with the error recorded, not
  // always with a negative count.
  int code = Z_OK;
  const char* message = gzerror(file.get(), &code);
  if (n < 0 || (code != Z_OK && code != Z_STREAM_END))
    throw Error("cannot decompress '" + path.string() + "' (" + message + "); the file is damaged or truncated");
  return content;
}

}  // namespace layerprobe
