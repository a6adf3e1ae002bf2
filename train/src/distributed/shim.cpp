// libtorch's own c10d Gloo process group, reached from Rust: a TCPStore rendezvous, a ProcessGroupGloo on
// it, and an all-reduce (sum) of tensors in place. C ABI; C++ exceptions become error texts.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

struct medico_process_group {
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
};

static void copy_error(const std::exception& e, char* error, size_t capacity) {
  if (capacity == 0) return;
  std::strncpy(error, e.what(), capacity - 1);
  error[capacity - 1] = '\0';
}

// The store at master_addr:master_port is hosted by rank 0, or (host_store == 0) by the launcher (torchrun's
// agent); the group's keys live under the prefix "medico" either way.
extern "C" medico_process_group* medico_process_group_new(int rank, int world_size, const char* master_addr,
                                                          int master_port, int host_store, int timeout_ms,
                                                          char* error, size_t error_capacity) {
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(master_port);
    store_options.isServer = host_store != 0 && rank == 0;
    store_options.numWorkers = world_size;
    store_options.timeout = std::chrono::milliseconds(timeout_ms);
    auto tcp_store = c10::make_intrusive<c10d::TCPStore>(std::string(master_addr), store_options);
    auto store = c10::make_intrusive<c10d::PrefixStore>("medico", tcp_store);
    auto options = c10d::ProcessGroupGloo::Options::create(std::chrono::milliseconds(timeout_ms));
    // As torch.distributed: the interface GLOO_SOCKET_IFNAME names, else the one the host name resolves to.
    const char* interface = std::getenv("GLOO_SOCKET_IFNAME");
    options->devices.push_back(interface != nullptr && *interface != '\0'
                                   ? c10d::ProcessGroupGloo::createDeviceForInterface(interface)
                                   : c10d::ProcessGroupGloo::createDefaultDevice());
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, options);
    return new medico_process_group{group};
  } catch (const std::exception& e) {
    copy_error(e, error, error_capacity);
    return nullptr;
  }
}

extern "C" int medico_process_group_all_reduce_sum(medico_process_group* group, at::Tensor** tensors, size_t count,
                                                   char* error, size_t error_capacity) {
  try {
    std::vector<at::Tensor> list;
    list.reserve(count);
    for (size_t i = 0; i < count; ++i) list.push_back(*tensors[i]);
    group->group->allreduce(list)->wait();
    return 0;
  } catch (const std::exception& e) {
    copy_error(e, error, error_capacity);
    return 1;
  }
}

extern "C" void medico_process_group_free(medico_process_group* group) { delete group; }
