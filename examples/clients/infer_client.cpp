// Calls a model served by `neuropod serve` over the Open Inference Protocol's HTTP/JSON API,
// with nothing but the C++ standard library and POSIX sockets:
//
//   g++ -std=c++17 -O2 -o infer_client infer_client.cpp && ./infer_client 127.0.0.1 8000 addition_model
//
// It sends x = [[1, 2, 3]] and y = [[10, 20, 30]] and prints the response. Production code would
// use Triton's C++ client library (tritonclient's InferenceServerGrpcClient or
// InferenceServerHttpClient), which speaks the same protocol with binary tensors.

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
    const std::string host = argc > 1 ? argv[1] : "127.0.0.1";
    const std::string port = argc > 2 ? argv[2] : "8000";
    const std::string model = argc > 3 ? argv[3] : "addition_model";

    const std::string body =
        R"({"inputs": [)"
        R"({"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},)"
        R"({"name": "y", "shape": [1, 3], "datatype": "FP32", "data": [10, 20, 30]}]})";
    std::string request = "POST /v2/models/" + model + "/infer HTTP/1.1\r\n";
    request += "Host: " + host + ":" + port + "\r\n";
    request += "Content-Type: application/json\r\n";
    if (const char* token = std::getenv("NEUROPOD_SERVE_TOKEN"); token != nullptr && *token != '\0') {
        request += std::string("Authorization: Bearer ") + token + "\r\n";
    }
    request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    request += "Connection: close\r\n\r\n" + body;

    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* address = nullptr;
    if (getaddrinfo(host.c_str(), port.c_str(), &hints, &address) != 0) {
        std::cerr << "cannot resolve " << host << "\n";
        return 1;
    }
    const int fd = socket(address->ai_family, address->ai_socktype, address->ai_protocol);
    if (fd < 0 || connect(fd, address->ai_addr, address->ai_addrlen) != 0) {
        std::cerr << "cannot connect to " << host << ":" << port << ": " << std::strerror(errno) << "\n";
        freeaddrinfo(address);
        return 1;
    }
    freeaddrinfo(address);
    for (size_t sent = 0; sent < request.size();) {
        const ssize_t n = send(fd, request.data() + sent, request.size() - sent, 0);
        if (n <= 0) {
            std::cerr << "send failed\n";
            close(fd);
            return 1;
        }
        sent += static_cast<size_t>(n);
    }
    std::string response;
    char buffer[4096];
    for (ssize_t n; (n = recv(fd, buffer, sizeof buffer, 0)) > 0;) {
        response.append(buffer, static_cast<size_t>(n));
    }
    close(fd);

    const size_t status_end = response.find("\r\n");
    const size_t body_start = response.find("\r\n\r\n");
    if (status_end == std::string::npos || body_start == std::string::npos) {
        std::cerr << "malformed response\n";
        return 1;
    }
    const std::string status = response.substr(0, status_end);
    const std::string json = response.substr(body_start + 4);
    if (status.find(" 200 ") == std::string::npos) {
        // Errors are {"error": "..."}: 4xx for a bad request, 500 when the model failed.
        std::cerr << status << ": " << json << "\n";
        return 1;
    }
    std::cout << json << "\n";
    return 0;
}
