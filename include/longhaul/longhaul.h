// longhaul: context-parallel long-sequence training. `#include <longhaul/longhaul.h>` and link
// `longhaul::longhaul` for the whole public API:
//   World and init (launchers), Communicator and its backends, ProcessMesh, errors;
//   Mask, block attention (attention_forward/backward, merge_into);
//   ShardPlan, ContextParallel and its options, the planner;
//   the data module: TokenSource, the HDF5 token store reader (with HDF5), DDSampler, Batch.
#pragma once

#include "longhaul/config.h"

#include "core/errors.h"
#include "runtime/comm/comm.h"
#include "runtime/comm/checked/communicator.h"
#include "runtime/comm/local/communicator.h"
#include "runtime/comm/nccl_order/communicator.h"
#include "runtime/comm/routed/communicator.h"
#include "runtime/mesh.h"
#if LONGHAUL_WITH_MPI
#include "runtime/comm/mpi/communicator.h"
#endif
#if LONGHAUL_WITH_NCCL
#include "runtime/comm/nccl/communicator.h"
#endif
#if LONGHAUL_WITH_C10D
#include "runtime/comm/c10d/communicator.h"
#endif

#include "attention/attention.h"
#include "attention/mask.h"

#include "parallel/context_parallel.h"
#include "parallel/options.h"
#include "parallel/planner.h"
#include "parallel/shard_plan.h"

#include "data/batch.h"
#include "data/sampler.h"
#include "data/token_source.h"
#if LONGHAUL_WITH_HDF5
#include "data/hdf5/store_reader.h"
#endif

#include "launch/world.h"
