#include "runtime/mesh.h"

#include <vector>

#include "core/errors.h"
#include "runtime/comm/agreement.h"

namespace longhaul {

ProcessMesh::ProcessMesh(CommPtr world, MeshShape shape) : world_(std::move(world)), shape_(shape) {
  LH_CHECK(world_ != nullptr, "ProcessMesh: the world communicator is null");
  const int n = world_->size();
  // This rank's checks, then the group's: ranks with other shapes would split into groups that do
  // not match (a rank whose shape is invalid fails its peers at once too).
  check_valid_and_agreed(
      *world_, at::Device(at::kCUDA),
      [&] {
        LH_CHECK(shape.cp >= 1 && shape.ulysses >= 1, "ProcessMesh: cp (", shape.cp, ") and ulysses (", shape.ulysses,
                 ") must be positive");
        LH_CHECK(n % shape.cp == 0, "ProcessMesh: world size ", n, " is not divisible by cp ", shape.cp,
                 "; the data-parallel size must be a whole number");
        LH_CHECK(shape.cp % shape.ulysses == 0, "ProcessMesh: cp ", shape.cp,
                 " is not divisible by the ulysses degree ", shape.ulysses);
      },
      [&](bool) -> std::vector<AgreedField> { return {{"cp", shape.cp}, {"ulysses", shape.ulysses}}; }, "ProcessMesh",
      "every rank must build the mesh with the same valid shape");
  const int w = world_->rank();
  const int dp_index = w / shape.cp;
  const int ring_index = (w % shape.cp) / shape.ulysses;
  const int uly_index = w % shape.ulysses;
  const int ring_size = shape.cp / shape.ulysses;
  cp_ = world_->split(dp_index, w);
  ulysses_ = world_->split(dp_index * ring_size + ring_index, uly_index);
  ring_ = world_->split(dp_index * shape.ulysses + uly_index, ring_index);
  dp_ = world_->split(w % shape.cp, dp_index);
}

}  // namespace longhaul
