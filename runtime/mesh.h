// ProcessMesh: splits a world communicator into data-parallel × ring × ulysses groups. World ranks
// are ordered with the ulysses index varying fastest, then ring, then data-parallel:
//   world_rank = dp_index · cp + ring_index · ulysses + ulysses_index,  cp = ring · ulysses.
#pragma once

#include "runtime/comm/comm.h"

namespace longhaul {

struct MeshShape {
  int cp = 1;       // context-parallel group size (ring × ulysses); the rest is data parallel
  int ulysses = 1;  // Ulysses degree inside each CP group (divides cp)
};

class ProcessMesh {
 public:
  ProcessMesh(CommPtr world, MeshShape shape);

  const CommPtr& world() const { return world_; }
  const CommPtr& cp() const { return cp_; }            // ring × ulysses ranks of one sequence
  const CommPtr& ring() const { return ring_; }        // same ulysses index, across ring steps
  const CommPtr& ulysses() const { return ulysses_; }  // one Ulysses group
  const CommPtr& dp() const { return dp_; }            // same CP position, across replicas
  int dp_size() const { return world_->size() / shape_.cp; }
  const MeshShape& shape() const { return shape_; }

 private:
  CommPtr world_, cp_, ring_, ulysses_, dp_;
  MeshShape shape_;
};

}  // namespace longhaul
