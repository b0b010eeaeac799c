// The one hash layerprobe uses to notice changed content: FNV-1a, 64-bit.
// Not cryptographic; it tells a file, a feature set or an encoder's weights
// from another, so a later step can refuse to mix them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace layerprobe {

class Fnv1a64 {
 public:
  // Mixes `size` bytes, one at a time (FNV-1a over a byte string).
  void add_bytes(const void* data, size_t size) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < size; ++i) add_word(bytes[i]);
  }
  // Mixes a whole 64-bit value in one step.
  void add_word(uint64_t value) {
    value_ ^= value;
    value_ *= 1099511628211ULL;
  }
  uint64_t value() const { return value_; }

 private:
  uint64_t value_ = 1469598103934665603ULL;
};

}  // namespace layerprobe
