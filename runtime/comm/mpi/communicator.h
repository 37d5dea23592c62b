// The `mpi` backend: CPU tensors over MPI non-blocking operations, driven by the progress engine
// (engine.h). Native collectives; rows travel as a contiguous datatype, so counts stay in int
// range for any realistic tensor; point-to-point messages above 1 GiB go in pieces.
#pragma once

#include "runtime/comm/comm.h"

namespace longhaul::mpi {

// The world communicator (a duplicate of MPI_COMM_WORLD). Starts MPI on first use.
CommPtr create_world(CommOptions options = {});
// MPI_Finalize (or MPI_Abort when operations were left incomplete by a failure).
void shutdown();
// The error code MPI_Abort ends the job with (default 1): a program that knows why it failed
// (the tool: 4 CommError, 5 TimeoutError) sets it before shutdown, so mpirun exits with it.
void set_abort_code(int code);
// True when the process was started by an MPI launcher (mpirun/mpiexec/srun with PMI).
bool launched();

}  // namespace longhaul::mpi
