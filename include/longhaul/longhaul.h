// longhaul: context-parallel long-sequence training. This header includes the public API.
#pragma once

#include "longhaul/config.h"
#include "launch/world.h"
#include "runtime/comm/comm.h"
#include "runtime/comm/local/communicator.h"
#include "runtime/errors.h"
#include "runtime/mesh.h"
#if LONGHAUL_WITH_MPI
#include "runtime/comm/mpi/communicator.h"
#endif
