#include "tokens/bearer_challenge.hpp"

#include <algorithm>

namespace acp::tokens {
namespace {

// RFC 9110 §5.6.2 tchar.
bool is_tchar(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return true;
    }
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return true;
    default:
        return false;
    }
}

// RFC 7235 §2.1 token68 characters (without the trailing '=' padding).
bool is_token68_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~' || c == '+' || c == '/';
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string lowered(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), lower);
    return out;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return lower(x) == lower(y);
           });
}

// A cursor over the header value; every method leaves `pos_` unchanged on failure.
class cursor {
public:
    explicit cursor(std::string_view s) : s_(s) {}

    [[nodiscard]] bool done() const { return pos_ >= s_.size(); }
    [[nodiscard]] char peek() const { return s_[pos_]; }
    [[nodiscard]] std::size_t pos() const { return pos_; }
    void seek(std::size_t p) { pos_ = p; }

    void skip_ows() {
        while (!done() && (peek() == ' ' || peek() == '\t')) {
            ++pos_;
        }
    }
    // Skips whitespace and empty list elements (RFC 9110 §5.6.1 allows them).
    void skip_ows_and_commas() {
        while (!done() && (peek() == ' ' || peek() == '\t' || peek() == ',')) {
            ++pos_;
        }
    }
    std::string_view token() {
        const auto start = pos_;
        while (!done() && is_tchar(peek())) {
            ++pos_;
        }
        return s_.substr(start, pos_ - start);
    }
    // RFC 9110 §5.6.4 quoted-string; nullopt (position restored) when malformed.
    std::optional<std::string> quoted_string() {
        const auto start = pos_;
        if (done() || peek() != '"') {
            return std::nullopt;
        }
        ++pos_;
        std::string out;
        while (!done()) {
            const char c = s_[pos_++];
            if (c == '"') {
                return out;
            }
            if (c == '\\') {
                if (done() || !is_text(peek())) {
                    break;
                }
                out.push_back(s_[pos_++]);
                continue;
            }
            if (!is_text(c)) {
                break;
            }
            out.push_back(c);
        }
        pos_ = start;
        return std::nullopt;
    }
    // token68, including its '=' padding; empty when none.
    std::string_view token68() {
        const auto start = pos_;
        while (!done() && is_token68_char(peek())) {
            ++pos_;
        }
        if (pos_ == start) {
            return {};
        }
        while (!done() && peek() == '=') {
            ++pos_;
        }
        return s_.substr(start, pos_ - start);
    }

private:
    // HTAB / SP / VCHAR / obs-text.
    static bool is_text(char c) {
        const auto u = static_cast<unsigned char>(c);
        return c == '\t' || (u >= 0x20 && u != 0x7f);
    }

    std::string_view s_;
    std::size_t pos_ = 0;
};

enum class param_outcome { parsed, not_a_param, malformed };

// auth-param = token BWS "=" BWS ( token / quoted-string ). `not_a_param`
// (cursor restored) when the next item is not `name =`, i.e. a new challenge.
param_outcome parse_param(cursor& c, challenge& into) {
    const auto start = c.pos();
    const auto name = c.token();
    if (name.empty()) {
        return param_outcome::not_a_param;
    }
    c.skip_ows();
    if (c.done() || c.peek() != '=') {
        c.seek(start);
        return param_outcome::not_a_param;
    }
    c.seek(c.pos() + 1);
    c.skip_ows();
    std::string value;
    if (!c.done() && c.peek() == '"') {
        auto q = c.quoted_string();
        if (!q) {
            return param_outcome::malformed;
        }
        value = std::move(*q);
    } else {
        const auto t = c.token();
        if (t.empty()) {
            return param_outcome::malformed;
        }
        value = std::string(t);
    }
    auto key = lowered(name);
    const bool duplicate = std::any_of(into.params.begin(), into.params.end(),
                                       [&](const auto& p) { return p.first == key; });
    if (duplicate || into.params.size() >= max_params_per_challenge) {
        return param_outcome::malformed;
    }
    into.params.emplace_back(std::move(key), std::move(value));
    return param_outcome::parsed;
}

// After a value: OWS then ',' or end. Returns false on anything else.
bool at_list_boundary(cursor& c) {
    c.skip_ows();
    return c.done() || c.peek() == ',';
}

}  // namespace

std::optional<std::string_view> challenge::param(std::string_view name) const {
    for (const auto& [k, v] : params) {
        if (iequals(k, name)) {
            return std::string_view(v);
        }
    }
    return std::nullopt;
}

std::optional<std::vector<challenge>> parse_challenges(std::string_view header_value) {
    if (header_value.size() > max_challenge_header_bytes) {
        return std::nullopt;
    }
    std::vector<challenge> out;
    cursor c(header_value);
    c.skip_ows_and_commas();
    while (!c.done()) {
        challenge ch;
        const auto scheme = c.token();
        if (scheme.empty() || out.size() >= max_challenges) {
            return std::nullopt;
        }
        ch.scheme = lowered(scheme);
        // The scheme is followed by 1*SP and then token68 or params, or by a list boundary.
        const auto after_scheme = c.pos();
        c.skip_ows();
        const bool had_space = c.pos() > after_scheme;
        if (!c.done() && c.peek() != ',' && had_space) {
            // `Scheme token68=`: padded token68 filling the whole element.
            const auto t68_start = c.pos();
            const auto t68 = c.token68();
            if (!t68.empty() && t68.back() == '=' && at_list_boundary(c)) {
                ch.token68 = std::string(t68);
            } else {
                c.seek(t68_start);
                // First parameter; a bare token with no '=' is token68 too (`Negotiate abc`).
                const auto r = parse_param(c, ch);
                if (r == param_outcome::malformed) {
                    return std::nullopt;
                }
                if (r == param_outcome::not_a_param) {
                    const auto t = c.token68();
                    if (t.empty() || !at_list_boundary(c)) {
                        return std::nullopt;
                    }
                    ch.token68 = std::string(t);
                } else {
                    // Further params, comma-separated, until something that is not `name=`.
                    while (true) {
                        if (!at_list_boundary(c)) {
                            return std::nullopt;
                        }
                        const auto before = c.pos();
                        c.skip_ows_and_commas();
                        if (c.done()) {
                            break;
                        }
                        const auto r2 = parse_param(c, ch);
                        if (r2 == param_outcome::malformed) {
                            return std::nullopt;
                        }
                        if (r2 == param_outcome::not_a_param) {
                            c.seek(before);  // the next challenge starts here
                            break;
                        }
                    }
                }
            }
        } else if (!c.done() && c.peek() != ',') {
            return std::nullopt;  // scheme glued to something that is not a token
        }
        out.push_back(std::move(ch));
        if (!at_list_boundary(c)) {
            return std::nullopt;
        }
        c.skip_ows_and_commas();
    }
    if (out.empty()) {
        return std::nullopt;
    }
    return out;
}

std::optional<std::vector<challenge>> parse_challenges(const std::vector<std::string_view>& header_values) {
    std::vector<challenge> all;
    for (const auto v : header_values) {
        auto one = parse_challenges(v);
        if (!one || all.size() + one->size() > max_challenges) {
            return std::nullopt;
        }
        all.insert(all.end(), std::make_move_iterator(one->begin()), std::make_move_iterator(one->end()));
    }
    if (all.empty()) {
        return std::nullopt;
    }
    return all;
}

std::optional<bearer_params> find_bearer(const std::vector<challenge>& challenges) {
    for (const auto& ch : challenges) {
        if (ch.scheme != "bearer") {
            continue;
        }
        const auto realm = ch.param("realm");
        if (!realm || realm->empty()) {
            continue;
        }
        return bearer_params{std::string(*realm), std::string(ch.param("service").value_or("")),
                             std::string(ch.param("scope").value_or(""))};
    }
    return std::nullopt;
}

bool has_basic(const std::vector<challenge>& challenges) {
    return std::any_of(challenges.begin(), challenges.end(), [](const challenge& ch) { return ch.scheme == "basic"; });
}

}  // namespace acp::tokens
