// The parts of the longhaul._C extension, one per job; module.cpp calls them in order (later parts
// take the classes of earlier ones as arguments).
#pragma once

#include <pybind11/pybind11.h>

namespace longhaul::python {

void bind_comm(pybind11::module_& m);              // Communicator, init(), the world, ProcessGroup wrap
void bind_mask(pybind11::module_& m);              // Mask: shorthands, families, slices
void bind_plan(pybind11::module_& m);              // ShardPlan over a communicator
void bind_context_parallel(pybind11::module_& m);  // ContextParallel forward/backward (autograd in Python)
void bind_data(pybind11::module_& m);              // token store, writer, DD sampler with batches
void bind_info(pybind11::module_& m);              // build configuration
void bind_degrees(pybind11::module_& m);           // the bucket planner: a CP degree per DD bucket
void bind_host_memory(pybind11::module_& m);       // malloc's policy for a training loop's host memory
void bind_loss(pybind11::module_& m);              // the output head and its loss over chunks of rows

}  // namespace longhaul::python
