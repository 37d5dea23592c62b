// A timing event recorded now on the current stream of a device: the host goes on queueing work,
// and the device time between two such events is read later (c10::Event::elapsedTime, after the
// second one's synchronize()). Timing stays on (BACKEND_DEFAULT; torch's own default disables it).
#pragma once

#include <c10/core/Device.h>
#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>

namespace longhaul {

inline c10::Event record_event_on(const c10::Device& device) {
  c10::Event e(device.type(), c10::EventFlag::BACKEND_DEFAULT);
  e.record(c10::impl::VirtualGuardImpl(device.type()).getStream(device));
  return e;
}

}  // namespace longhaul
