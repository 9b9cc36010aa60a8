// The rendezvous stores (src/dist/store.h): a shared directory and a small
// TCP key-value server on rank 0. Keys and values only; no collectives.
#include "dist/store.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "tandem/error.h"

namespace tandem {
namespace dist {
namespace detail {

namespace {

using Clock = std::chrono::steady_clock;

double seconds(std::chrono::milliseconds ms) { return static_cast<double>(ms.count()) / 1000.0; }

// ---- FileStore ----

std::string hex_key(const std::string& key) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : key) {
    if (std::isalnum(c) != 0 || c == '_' || c == '-' || c == '.') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(digits[c >> 4]);
      out.push_back(digits[c & 15]);
    }
  }
  return out;
}

class FileStore : public Store {
 public:
  explicit FileStore(std::string dir) : dir_(std::move(dir)) {
    if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST)
      TANDEM_FAIL("dist: cannot create the rendezvous directory ", dir_, ": ",
                  std::strerror(errno));
  }
  void set(const std::string& key, const std::string& value) override {
    const std::string path = dir_ + "/" + hex_key(key);
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    {
      std::ofstream out(tmp, std::ios::binary);
      out.write(value.data(), static_cast<std::streamsize>(value.size()));
      TANDEM_CHECK(out.good(), "dist: cannot write ", tmp, " in the rendezvous directory");
    }
    TANDEM_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "dist: cannot rename ", tmp, ": ",
                 std::strerror(errno));
  }
  std::optional<std::string> try_get(const std::string& key) override {
    std::ifstream in(dir_ + "/" + hex_key(key), std::ios::binary);
    if (!in) return std::nullopt;
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string describe() const override { return "file://" + dir_; }

 private:
  std::string dir_;
};

// ---- TcpStore ----
// Request: 'S' <u32 klen> key <u32 vlen> value -> 'K';  'G' <u32 klen> key ->
// 'Y' <u32 vlen> value | 'N'.

bool read_all(int fd, void* buf, size_t n) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r == 0) return false;
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}
bool write_all(int fd, const void* buf, size_t n) {
  const auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    const ssize_t r = ::send(fd, p, n, MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}
bool write_string(int fd, const std::string& s) {
  const auto len = static_cast<uint32_t>(s.size());
  return write_all(fd, &len, 4) && write_all(fd, s.data(), s.size());
}
bool read_string(int fd, std::string* s) {
  uint32_t len = 0;
  if (!read_all(fd, &len, 4) || len > (1u << 30)) return false;
  s->resize(len);
  return read_all(fd, s->data(), len);
}

addrinfo* resolve(const std::string& host, int port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  TANDEM_CHECK(rc == 0 && res != nullptr, "dist: cannot resolve the rendezvous host '", host,
               "': ", ::gai_strerror(rc));
  return res;
}

class TcpStoreServer {
 public:
  TcpStoreServer(const std::string& host, int port) {
    addrinfo* res = resolve(host, port, true);
    std::string why;
    for (addrinfo* a = res; a != nullptr && listen_fd_ < 0; a = a->ai_next) {
      const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) continue;
      const int one = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 128) == 0) {
        listen_fd_ = fd;
      } else {
        why = std::strerror(errno);
        ::close(fd);
      }
    }
    ::freeaddrinfo(res);
    TANDEM_CHECK(listen_fd_ >= 0, "dist: rank 0 cannot serve the rendezvous store on ", host, ":",
                 port, ": ", why, " (is the port in use?)");
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~TcpStoreServer() {
    stop_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    accept_thread_.join();
    ::close(listen_fd_);
    std::lock_guard<std::mutex> lock(mutex_);
    for (int fd : clients_) ::shutdown(fd, SHUT_RDWR);
    for (auto& t : client_threads_) t.join();
    for (int fd : clients_) ::close(fd);
  }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard<std::mutex> lock(mutex_);
      clients_.push_back(fd);
      client_threads_.emplace_back([this, fd] { serve(fd); });
    }
  }
  void serve(int fd) {
    char op = 0;
    while (read_all(fd, &op, 1)) {
      std::string key, value;
      if (!read_string(fd, &key)) return;
      if (op == 'S') {
        if (!read_string(fd, &value)) return;
        {
          std::lock_guard<std::mutex> lock(mutex_);
          data_[key] = value;
        }
        if (!write_all(fd, "K", 1)) return;
      } else if (op == 'G') {
        bool found = false;
        {
          std::lock_guard<std::mutex> lock(mutex_);
          auto it = data_.find(key);
          if (it != data_.end()) {
            found = true;
            value = it->second;
          }
        }
        if (!(found ? write_all(fd, "Y", 1) && write_string(fd, value) : write_all(fd, "N", 1)))
          return;
      } else {
        return;
      }
    }
  }

  int listen_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread accept_thread_;
  std::mutex mutex_;
  std::map<std::string, std::string> data_;
  std::vector<int> clients_;
  std::vector<std::thread> client_threads_;
};

class TcpStore : public Store {
 public:
  TcpStore(const std::string& url, int rank, std::chrono::milliseconds timeout) : url_(url) {
    auto [host, port] = parse_tcp_url(url);
    if (rank == 0) server_ = std::make_unique<TcpStoreServer>(host, port);
    const auto deadline = Clock::now() + timeout;
    std::string why;
    while (fd_ < 0) {
      addrinfo* res = resolve(host, port, false);
      for (addrinfo* a = res; a != nullptr && fd_ < 0; a = a->ai_next) {
        const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
          const int one = 1;
          ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
          fd_ = fd;
        } else {
          why = std::strerror(errno);
          ::close(fd);
        }
      }
      ::freeaddrinfo(res);
      if (fd_ >= 0) break;
      TANDEM_CHECK(Clock::now() < deadline, "dist: rank ", rank,
                   " could not reach the rendezvous store of rank 0 at ", url, " within ",
                   seconds(timeout), " s (", why,
                   "): rank 0 did not arrive or the address is wrong");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~TcpStore() override {
    if (fd_ >= 0) ::close(fd_);
  }
  void set(const std::string& key, const std::string& value) override {
    std::lock_guard<std::mutex> lock(mutex_);
    char reply = 0;
    TANDEM_CHECK(write_all(fd_, "S", 1) && write_string(fd_, key) && write_string(fd_, value) &&
                     read_all(fd_, &reply, 1) && reply == 'K',
                 "dist: the rendezvous store at ", url_,
                 " stopped answering (rank 0, which serves it, has exited)");
  }
  std::optional<std::string> try_get(const std::string& key) override {
    std::lock_guard<std::mutex> lock(mutex_);
    char reply = 0;
    TANDEM_CHECK(write_all(fd_, "G", 1) && write_string(fd_, key) && read_all(fd_, &reply, 1),
                 "dist: the rendezvous store at ", url_,
                 " stopped answering (rank 0, which serves it, has exited)");
    if (reply != 'Y') return std::nullopt;
    std::string value;
    TANDEM_CHECK(read_string(fd_, &value), "dist: the rendezvous store at ", url_,
                 " stopped answering mid-reply");
    return value;
  }
  std::string describe() const override { return url_; }

 private:
  std::string url_;
  std::unique_ptr<TcpStoreServer> server_;
  int fd_ = -1;
  std::mutex mutex_;
};

}  // namespace

std::string Store::get(const std::string& key, std::chrono::milliseconds timeout,
                       const std::string& what) {
  const auto deadline = Clock::now() + timeout;
  auto wait = std::chrono::milliseconds(1);
  while (true) {
    if (auto v = try_get(key)) return *v;
    TANDEM_CHECK(Clock::now() < deadline, "dist: ", what, " did not arrive within ",
                 seconds(timeout), " s (rendezvous ", describe(), ")");
    std::this_thread::sleep_for(wait);
    wait = std::min(wait * 2, std::chrono::milliseconds(50));
  }
}

std::pair<std::string, int> parse_tcp_url(const std::string& url) {
  const std::string scheme = "tcp://";
  TANDEM_CHECK(url.compare(0, scheme.size(), scheme) == 0, "dist: '", url,
               "' is not a tcp://HOST:PORT rendezvous");
  const std::string rest = url.substr(scheme.size());
  const size_t colon = rest.rfind(':');
  TANDEM_CHECK(colon != std::string::npos && colon > 0 && colon + 1 < rest.size(), "dist: '", url,
               "' has no HOST:PORT (expected tcp://HOST:PORT)");
  std::string host = rest.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  int port = 0;
  try {
    size_t used = 0;
    port = std::stoi(rest.substr(colon + 1), &used);
    TANDEM_CHECK(used == rest.size() - colon - 1, "");
  } catch (...) {
    port = -1;
  }
  TANDEM_CHECK(port > 0 && port < 65536, "dist: '", url, "' has no valid port (1..65535)");
  return {host, port};
}

std::shared_ptr<Store> make_store(const std::string& url, int rank,
                                  std::chrono::milliseconds timeout) {
  const std::string file = "file://";
  if (url.compare(0, file.size(), file) == 0) {
    const std::string path = url.substr(file.size());
    TANDEM_CHECK(!path.empty() && path[0] == '/', "dist: '", url,
                 "' is not a file:///ABSOLUTE/PATH rendezvous");
    return std::make_shared<FileStore>(path);
  }
  if (url.compare(0, 6, "tcp://") == 0) return std::make_shared<TcpStore>(url, rank, timeout);
  TANDEM_FAIL("dist: unknown rendezvous '", url, "' (expected tcp://HOST:PORT or file:///PATH)");
}

std::string local_address(const std::string& url) {
  if (const char* env = std::getenv("TANDEM_DIST_HOST"); env != nullptr && *env != '\0') return env;
  if (url.compare(0, 6, "tcp://") != 0) return "127.0.0.1";
  auto [host, port] = parse_tcp_url(url);
  // The address of the interface that routes to the rendezvous host (a UDP
  // connect sends nothing).
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0) return host;
  std::string out = "127.0.0.1";
  const int fd = ::socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    char buf[INET6_ADDRSTRLEN] = {0};
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      const void* addr =
          ss.ss_family == AF_INET
              ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&ss)->sin_addr)
              : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr);
      if (::inet_ntop(ss.ss_family, addr, buf, sizeof(buf)) != nullptr) out = buf;
    }
  }
  if (fd >= 0) ::close(fd);
  ::freeaddrinfo(res);
  return out;
}

}  // namespace detail
}  // namespace dist
}  // namespace tandem
