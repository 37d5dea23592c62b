#include "data/hdf5/pending_store.h"

#include <unistd.h>

#include <cstring>

#include "core/errors.h"
#include "data/files.h"
#include "data/hdf5/store_stamp.h"

namespace longhaul::data {

PendingStore::PendingStore(std::string path, StoreMeta meta, StoreWriterOptions options)
    : path_(std::move(path)),
      tmp_(path_ + ".tmp." + std::to_string(::getpid())),
      writer_(tmp_, std::move(meta), options) {}

PendingStore::~PendingStore() {
  if (!committed_) files::remove(tmp_);
}

void PendingStore::commit() {
  writer_.close();  // a failed close removes the temporary file itself
  if (const int err = files::rename(tmp_, path_)) {
    files::remove(tmp_);
    committed_ = true;  // nothing left to remove
    throw Error("token store: cannot move the finished store to '" + path_ + "': " + std::strerror(err));
  }
  committed_ = true;
  stamp_store(path_);
}

}  // namespace longhaul::data
