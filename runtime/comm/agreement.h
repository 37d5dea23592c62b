// Checks that every rank of a group makes the same call (the same sizes, dtypes, options) before a
// collective whose matching would otherwise fail in the transport: a message truncated on one
// rank, a wrong answer or a wait until the deadline on another. One small all-reduce when the
// ranks agree; when they do not, every rank throws the same InvalidArgument naming the first rank
// and field that differ from rank 0.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/comm/comm.h"

namespace longhaul {

struct AgreedField {
  AgreedField(std::string name, int64_t value, bool real = false, std::function<std::string()> describe = {})
      : name(std::move(name)), value(value), real(real), describe(std::move(describe)) {}

  std::string name;  // "T", "dtype", "scale"
  int64_t value;
  bool real = false;  // value holds a double's bits (printed as the number)
  // A described field: value is a hash or fingerprint, and the error shows this rank's
  // description (made only then: the check runs on every call of a hot path).
  std::function<std::string()> describe;

  static AgreedField number(std::string name, double v);
  static AgreedField of_text(std::string name, std::string text);  // compared by the text's hash
  static AgreedField described(std::string name, uint64_t fingerprint, std::function<std::string()> describe);
};

// Every rank calls it with the same field names, in the same order. `who` starts the error
// ("ContextParallel"), `expected` ends it ("every rank must call with the same T, heads, ...").
// `device`: where the check's few numbers travel (the CPU, or a tensor's device for a
// communicator that moves CUDA tensors only).
void check_ranks_agree(Communicator& comm, const at::Device& device, const std::vector<AgreedField>& fields,
                       const std::string& who, const std::string& expected);

// This rank's own `checks` first, then check_ranks_agree over an "arguments" field followed by
// fields(valid). A rank whose checks threw an InvalidArgument still takes part, its error as its
// "arguments" (fields(false) gives placeholders, as many as fields(true): its inputs may be what is
// invalid), so its peers fail at once naming it instead of waiting for it until their deadline;
// then it throws its own error.
void check_valid_and_agreed(Communicator& comm, const at::Device& device, const std::function<void()>& checks,
                            const std::function<std::vector<AgreedField>(bool valid)>& fields, const std::string& who,
                            const std::string& expected);

}  // namespace longhaul
