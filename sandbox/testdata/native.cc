// A C++ program linked against libstdc++, libgcc_s, libpthread.so.0 and
// libdl.so.2: it resolves the sandbox's hostname, starts a thread, throws
// and catches an exception, and prints what it found as JSON.
#include <dlfcn.h>
#include <netdb.h>
#include <pthread.h>
#include <unistd.h>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  addrinfo* ai = nullptr;
  bool resolved = getaddrinfo(host, nullptr, nullptr, &ai) == 0;
  if (ai) freeaddrinfo(ai);
  std::string caught;
  try {
    throw std::runtime_error("thrown");
  } catch (const std::exception& e) {
    caught = e.what();
  }
  int v = 0;
  std::thread t([&] { v = 42; });
  t.join();
  void* self = dlopen(nullptr, RTLD_NOW);
  std::cout << "{\"host\":\"" << host << "\",\"resolved\":" << (resolved ? "true" : "false")
            << ",\"caught\":\"" << caught << "\",\"thread\":" << v << ",\"dlopen\":" << (self ? "true" : "false")
            << ",\"arg\":" << (argc > 1 ? argv[1] : "null") << "}" << std::endl;
  return 0;
}
