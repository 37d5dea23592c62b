// A token store written beside its destination and moved into place by commit(): until then the
// destination keeps what it held (a store being rewritten stays readable), and one never
// committed (an error on the way) leaves no file behind. `longhaul prep` and the Python
// module's write_store both write through it.
#pragma once

#include <string>

#include "data/hdf5/store_writer.h"

namespace longhaul::data {

class PendingStore {
 public:
  PendingStore(std::string path, StoreMeta meta, StoreWriterOptions options = {});
  ~PendingStore();  // removes the temporary file unless committed
  PendingStore(const PendingStore&) = delete;
  PendingStore& operator=(const PendingStore&) = delete;

  TokenStoreWriter& writer() { return writer_; }
  // Closes the store, renames it over the destination and stamps it (written here: readers on
  // this machine need not verify it). Throws Error naming the destination if it cannot be moved.
  void commit();

 private:
  std::string path_, tmp_;
  TokenStoreWriter writer_;
  bool committed_ = false;
};

}  // namespace longhaul::data
