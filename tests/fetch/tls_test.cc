// TLS rules of HttpClient against a real HTTPS server on loopback (Python's ssl module, with a
// self-signed certificate made by the openssl CLI for this test): verification is on by default
// (an unknown CA fails), --ca-file makes the same server trusted, and the minimum TLS version is
// enforced (1.3 required vs a server capped at 1.2 fails).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "fetch/http_client.h"
#include "tests/testing/temp_dir.h"

namespace modelfs {
namespace {

constexpr const char* kServer = R"PY(
import http.server, ssl, sys, threading
cert, key, maxver, portfile = sys.argv[1:5]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"tls ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.maximum_version = ssl.TLSVersion.TLSv1_2 if maxver == "1.2" else ssl.TLSVersion.TLSv1_3
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os
os.rename(portfile + ".tmp", portfile)
srv.serve_forever()
)PY";

// A TLS server child process; killed on destruction.
class TlsServer {
 public:
  TlsServer(const testing::TempDir& dir, const std::string& maxver) {
    const std::string script = dir.Sub("tls_server.py"), portfile = dir.Sub("port-" + maxver);
    std::ofstream(script) << kServer;
    pid_ = fork();
    if (pid_ == 0) {
      execlp("python3", "python3", script.c_str(), dir.Sub("cert.pem").c_str(), dir.Sub("key.pem").c_str(),
             maxver.c_str(), portfile.c_str(), (char*)nullptr);
      _exit(127);
    }
    for (int i = 0; i < 200 && port_ == 0; ++i) {  // up to 10 s for Python to start
      std::ifstream in(portfile);
      if (!(in >> port_)) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~TlsServer() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_) + "/x"; }
  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
                            "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout " +
                            dir_.Sub("key.pem") + " -out " + dir_.Sub("cert.pem") + " >/dev/null 2>&1";
    ASSERT_EQ(system(cmd.c_str()), 0) << "openssl CLI failed";
  }
  http::Response Get(const std::string& url, const std::string& ca_file, const std::string& min_tls) {
    FetchOptions o;
    o.endpoint = url;
    o.connect_timeout_ms = 3000;
    o.request_timeout_s = 10;
    o.ca_file = ca_file;
    o.tls_min_version = min_tls;
    http::HttpClient c(o);
    http::Request r;
    r.url = url;
    http::StringSink sink(1 << 10);
    http::Response resp = c.Perform(r, &sink);
    if (resp.transport_ok) {
      EXPECT_EQ(sink.body, "tls ok");
    }
    return resp;
  }
  testing::TempDir dir_;
};

TEST_F(TlsTest, VerificationIsOnAndCaFileTrustsTheServer) {
  TlsServer s(dir_, "1.3");
  ASSERT_GT(s.port(), 0);
  http::Response untrusted = Get(s.url(), "", "1.2");
  EXPECT_FALSE(untrusted.transport_ok);
  EXPECT_NE(untrusted.error.find("certificate"), std::string::npos) << untrusted.error;
  http::Response trusted = Get(s.url(), dir_.Sub("cert.pem"), "1.2");
  EXPECT_TRUE(trusted.transport_ok) << trusted.error;
  EXPECT_EQ(trusted.status, 200);
  http::Response v13 = Get(s.url(), dir_.Sub("cert.pem"), "1.3");
  EXPECT_TRUE(v13.transport_ok) << v13.error;
}

TEST_F(TlsTest, MinimumVersionIsEnforced) {
  TlsServer s(dir_, "1.2");
  ASSERT_GT(s.port(), 0);
  EXPECT_TRUE(Get(s.url(), dir_.Sub("cert.pem"), "1.2").transport_ok);
  http::Response r = Get(s.url(), dir_.Sub("cert.pem"), "1.3");
  EXPECT_FALSE(r.transport_ok);
  EXPECT_EQ(r.status, 0);
}

}  // namespace
}  // namespace modelfs
