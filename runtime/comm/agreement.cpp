#include "runtime/comm/agreement.h"

#include <ATen/ATen.h>

#include <cstring>
#include <exception>

#include "core/errors.h"
#include "core/fnv1a.h"

namespace longhaul {
namespace {

std::string shown(const AgreedField& f, int64_t value) {
  if (!f.real) return std::to_string(value);
  double d;
  std::memcpy(&d, &value, sizeof d);
  return detail::str_cat(d);
}

}  // namespace

AgreedField AgreedField::number(std::string name, double v) {
  int64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return {std::move(name), bits, true, {}};
}

AgreedField AgreedField::of_text(std::string name, std::string text) {
  const uint64_t h = Fnv1a().text(text).value();  // the same on every rank and build
  return described(std::move(name), h, [text = std::move(text)] { return text; });
}

AgreedField AgreedField::described(std::string name, uint64_t fingerprint, std::function<std::string()> describe) {
  return {std::move(name), static_cast<int64_t>(fingerprint >> 1), false, std::move(describe)};
}

// The fields' fingerprint goes into one all-reduce (the max of [f, -f] gives the group's largest
// and smallest); only when they differ do the ranks gather the fields to name who differs.
void check_ranks_agree(Communicator& comm, const at::Device& device, const std::vector<AgreedField>& fields,
                       const std::string& who, const std::string& expected) {
  uint64_t signature = 0;
  for (const AgreedField& f : fields) signature = signature * 1000003u ^ static_cast<uint64_t>(f.value);
  const int64_t f = static_cast<int64_t>(signature >> 2);  // 62 bits: -f never overflows
  const at::Device dev = comm.moves(at::Device(at::kCPU)) ? at::Device(at::kCPU) : device;
  at::Tensor extremes = at::tensor({f, -f}, at::kLong).to(dev);
  comm.all_reduce(extremes, ReduceOp::Max)->wait();
  const at::Tensor ext = extremes.cpu();
  if (ext[0].item<int64_t>() == -ext[1].item<int64_t>()) return;
  const int64_t n = static_cast<int64_t>(fields.size());
  at::Tensor mine = at::empty({1, n}, at::kLong);
  for (int64_t i = 0; i < n; ++i) mine[0][i] = fields[i].value;
  mine = mine.to(dev);
  at::Tensor all = at::empty({comm.size(), n}, mine.options());
  comm.all_gather(all, mine)->wait();
  all = all.cpu();
  auto a = all.accessor<int64_t, 2>();
  for (int r = 1; r < comm.size(); ++r)
    for (int64_t i = 0; i < n; ++i)
      if (a[r][i] != a[0][i]) {
        const std::string values =
            !fields[i].describe
                ? detail::str_cat(" (", shown(fields[i], a[r][i]), " vs ", shown(fields[i], a[0][i]), ")")
                : detail::str_cat(" (this rank, ", comm.rank(), ", has ", fields[i].describe(), ")");
        throw InvalidArgument(
            detail::str_cat(who, ": rank ", r, " disagrees with rank 0 on ", fields[i].name, values, "; ", expected));
      }
  throw Error(who + ": the ranks' call fingerprints differ but their fields agree (internal error)");
}

void check_valid_and_agreed(Communicator& comm, const at::Device& device, const std::function<void()>& checks,
                            const std::function<std::vector<AgreedField>(bool valid)>& fields, const std::string& who,
                            const std::string& expected) {
  std::exception_ptr invalid;
  std::string why = "valid ones";
  try {
    checks();
  } catch (const InvalidArgument& e) {
    invalid = std::current_exception();
    why = e.what();
  }
  std::vector<AgreedField> all{AgreedField::of_text("arguments", why)};
  for (AgreedField& f : fields(!invalid)) all.push_back(std::move(f));
  try {
    check_ranks_agree(comm, device, all, who, expected);
  } catch (const InvalidArgument&) {
    if (invalid) std::rethrow_exception(invalid);
    throw;
  }
  if (invalid) std::rethrow_exception(invalid);
}

}  // namespace longhaul
