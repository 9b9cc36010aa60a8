// The rendezvous key-value store the ranks meet through (internal).
//
// FileStore: one file per key in a shared directory, written to a temporary
// name and renamed, so a reader sees a key whole or not at all. TcpStore:
// rank 0 serves the keys from a thread on tcp://host:port; every rank
// (rank 0 too) is a client. Both are polled: get() waits for a key until a
// deadline and then throws naming what did not arrive. Neither knows
// anything about collectives; Gloo and NCCL only read and write keys here.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace tandem {
namespace dist {
namespace detail {

class Store {
 public:
  virtual ~Store() = default;
  virtual void set(const std::string& key, const std::string& value) = 0;
  virtual std::optional<std::string> try_get(const std::string& key) = 0;
  // Polls until `key` exists or `timeout` has passed (then throws an Error
  // saying `what` did not arrive).
  std::string get(const std::string& key, std::chrono::milliseconds timeout,
                  const std::string& what);
  virtual std::string describe() const = 0;
};

// "file:///path" or "tcp://host:port" (rank 0 serves the TCP store).
std::shared_ptr<Store> make_store(const std::string& url, int rank,
                                  std::chrono::milliseconds timeout);

// The host and port of a tcp:// URL (throws for anything else).
std::pair<std::string, int> parse_tcp_url(const std::string& url);

// The address other ranks reach this one at: TANDEM_DIST_HOST when set; for a
// tcp:// rendezvous the local address that routes to its host; else 127.0.0.1.
std::string local_address(const std::string& url);

}  // namespace detail
}  // namespace dist
}  // namespace tandem
