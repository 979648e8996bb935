#include "tokens/alibaba_error.hpp"

#include "tokens/signing_primitives.hpp"

#include <algorithm>
#include <cctype>

namespace acp::tokens {

namespace {

constexpr std::size_t max_message = 400;

bool icontains(std::string_view hay, std::string_view needle) {
    if (needle.empty() || hay.size() < needle.size()) {
        return needle.empty();
    }
    const auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end(), [](char a, char b) {
        return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
    });
    return it != hay.end();
}

bool starts_with(std::string_view s, std::string_view p) {
    return s.substr(0, p.size()) == p;
}

void replace_all(std::string& s, std::string_view what, std::string_view with) {
    if (what.empty()) {
        return;
    }
    std::size_t pos = 0;
    while ((pos = s.find(what, pos)) != std::string::npos) {
        s.replace(pos, what.size(), with);
        pos += with.size();
    }
}

bool is_permission_failure(std::string_view code, long http_status) {
    return http_status == 403 || icontains(code, "Forbidden") || icontains(code, "NoPermission") ||
           icontains(code, "NotAuthorized") || icontains(code, "AccessDenied") || icontains(code, "Unauthorized");
}

}  // namespace

std::string api_error::describe() const {
    std::string out = api;
    if (!endpoint.empty()) {
        out += " at " + endpoint;
    }
    out += " failed:";
    std::string sep = " ";
    if (http_status != 0) {
        out += sep + "HTTP " + std::to_string(http_status);
        sep = ", ";
    }
    if (!code.empty()) {
        out += sep + "Code=" + code;
        sep = ", ";
    }
    if (!message.empty()) {
        out += sep + "Message=" + message;
        sep = ", ";
    }
    if (!request_id.empty()) {
        out += sep + "RequestId=" + request_id;
    }
    return out;
}

bool api_error::credential_rejected() const {
    return http_status == 401 || starts_with(code, "InvalidSecurityToken") || starts_with(code, "InvalidAccessKeyId") ||
           code == "SignatureDoesNotMatch" || code == "IncompleteSignature" || code == "MissingSecurityToken" ||
           icontains(code, "TokenExpired");
}

std::string scrub(std::string_view text, const std::vector<std::string_view>& secrets) {
    std::string out(text);
    // Alibaba gateways echo the string they signed, which carries the
    // AccessKeyId and the SecurityToken: keep only what precedes it.
    for (const std::string_view marker : {"string to sign", "stringToSign", "StringToSign", "CanonicalRequest"}) {
        const auto pos = out.find(marker);
        if (pos != std::string::npos) {
            out.resize(pos);
            out += "[server echo removed]";
        }
    }
    for (const auto s : secrets) {
        if (s.size() >= 4) {
            replace_all(out, s, "<redacted>");
            replace_all(out, percent_encode(s), "<redacted>");
        }
    }
    // Still there in another encoding (lower-case or needless escapes): the
    // whole text goes, it cannot be cut around the secret reliably.
    const auto decoded = percent_decode_lenient(out);  // gateways escape in either case
    for (const auto s : secrets) {
        if (s.size() >= 4 && decoded.find(s) != std::string::npos) {
            out = "[server message removed: it echoed a credential]";
            break;
        }
    }
    for (char& c : out) {
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) == 0x7f) {
            c = ' ';
        }
    }
    if (out.size() > max_message) {
        out.resize(max_message);
        out += "...";
    }
    return out;
}

std::string ram_permission_hint(std::string_view api, std::string_view code, long http_status) {
    if (!is_permission_failure(code, http_status)) {
        return {};
    }
    if (api == "GetAuthorizationToken") {
        return "cr:GetAuthorizationToken";
    }
    if (api == "ListInstanceEndpoint") {
        return "cr:ListInstanceEndpoint";
    }
    if (api == "AssumeRole") {
        return "sts:AssumeRole on the target role (and the role's trust policy must allow the calling identity)";
    }
    if (api == "AssumeRoleWithOIDC") {
        return "the role's trust policy must trust the cluster's OIDC provider and this ServiceAccount";
    }
    return {};
}

std::string describe_instance_failure(std::string_view instance, std::string_view region, std::string_view identity,
                                      const api_error& err) {
    std::string out;
    if (instance.empty()) {
        out = "ACR Personal Edition";
    } else {
        out = "ACR instance " + std::string(instance);
    }
    out += " (region " + (region.empty() ? std::string("unknown") : std::string(region)) + "): " + err.describe();
    if (err.code == "USER_NOT_EXIST" || icontains(err.message, "user is not exist")) {
        out +=
            "; this Alibaba Cloud identity has never been registered with Container Registry Personal Edition: "
            "sign in to the Container Registry console once as this RAM user and set a registry login password "
            "(or call CreateUserInfo), or use an Enterprise Edition instance (RAM roles and STS identities may "
            "not be able to use Personal Edition)";
        return out;
    }
    const auto hint = ram_permission_hint(err.api, err.code, err.http_status);
    if (!hint.empty()) {
        out += "; the identity " + std::string(identity) + " probably lacks the RAM permission " + hint;
    } else if (err.http_status == 0 && err.code == "Transport") {
        out += "; check the endpoint override and the node's network path to it";
    } else if (err.credential_rejected()) {
        out += "; the signing credential from " + std::string(identity) + " was rejected (expired or revoked)";
    }
    return out;
}

std::string pull_denied_hint(std::string_view instance, std::string_view identity) {
    return "the registry refused a fresh token for ACR instance " +
           (instance.empty() ? std::string("(Personal Edition)") : std::string(instance)) + ": the identity " +
           std::string(identity) + " probably lacks the RAM permission cr:PullRepository for this repository";
}

}  // namespace acp::tokens
