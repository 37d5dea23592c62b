// A ShardPlan with the communicator of its CP group, so that unshard() can gather over it. Shared
// by the plan and the context-parallel bindings.
#pragma once

#include "parallel/shard_plan.h"
#include "runtime/comm/comm.h"

namespace longhaul::python {

struct GroupPlan {
  ShardPlan plan;
  CommPtr group;  // null for a plan made for another rank (offline inspection)
};

}  // namespace longhaul::python
