// config::secret's wiping special members (config.hpp).
#include "config/config.hpp"

#include <openssl/crypto.h>

namespace acp::config {

void secret::wipe() noexcept {
    // The whole buffer, not just size(): a shorter value may have replaced a longer one.
    value_.resize(value_.capacity());
    OPENSSL_cleanse(value_.data(), value_.size());
    value_.clear();
}

secret::secret(secret&& other) noexcept : value_(std::move(other.value_)) {
    other.wipe();  // a short string is copied out of its in-object buffer, not stolen
}

secret& secret::operator=(const secret& other) {
    if (this != &other) {
        wipe();
        value_ = other.value_;
    }
    return *this;
}

secret& secret::operator=(secret&& other) noexcept {
    if (this != &other) {
        wipe();
        value_ = std::move(other.value_);
        other.wipe();
    }
    return *this;
}

secret::~secret() {
    wipe();
}

}  // namespace acp::config
