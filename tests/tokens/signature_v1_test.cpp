// Known-answer tests for the RPC V1 (HMAC-SHA1) signature used by STS AssumeRole.
// Expected values were computed with the OpenSSL command line, not with this code:
//
//   printf '%s' "$STRING_TO_SIGN" | openssl dgst -sha1 -hmac "$SECRET&" -binary | base64
//
// Vector 1 is the worked DescribeRegions example of Alibaba's RPC signature
// documentation (AccessKeyId "testid", secret "testsecret"); the command
// reproduces its published signature OLeaidS1JvxuMvnyHOwuJ+uX5qY=.
// Vector 2's string to sign was built by hand: the sorted, RFC 3986-encoded
// query (written out literally below) percent-encoded once more with
//   printf '%s' "$Q" | sed -e 's/%/%25/g' -e 's/&/%26/g' -e 's/=/%3D/g'
// and prefixed with "POST&%2F&".
#include "tokens/signature_v1.hpp"

#include <catch2/catch.hpp>

using namespace acp::tokens;

TEST_CASE("V1 signature reproduces the documented DescribeRegions example", "[alibaba][signature_v1]") {
    const string_pairs params = {
        {"Timestamp", "2016-02-23T12:46:24Z"},
        {"Format", "XML"},
        {"AccessKeyId", "testid"},
        {"Action", "DescribeRegions"},
        {"SignatureMethod", "HMAC-SHA1"},
        {"SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"},
        {"Version", "2014-05-26"},
        {"SignatureVersion", "1.0"},
    };
    CHECK(v1_string_to_sign("GET", params) ==
          "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1"
          "%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0"
          "%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26");
    CHECK(sign_v1("GET", params, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
}

TEST_CASE("V1 signature of an AssumeRole with an STS source credential", "[alibaba][signature_v1]") {
    // Query and form-body parameters are signed together, in one sorted list.
    const string_pairs params = {
        {"Version", "2015-04-01"},
        {"Action", "AssumeRole"},
        {"Format", "JSON"},
        {"Timestamp", "2024-05-06T07:08:09Z"},
        {"SignatureMethod", "HMAC-SHA1"},
        {"SignatureVersion", "1.0"},
        {"SignatureNonce", "0123456789abcdef0123456789abcdef"},
        {"AccessKeyId", "STS.source"},
        {"SecurityToken", "CAIS+tok/en="},
        {"RoleArn", "acs:ram::123456789012:role/acr-puller"},
        {"RoleSessionName", "acr-credential-proxy"},
        {"DurationSeconds", "3600"},
    };
    CHECK(v1_canonicalized_query(params) ==
          "AccessKeyId=STS.source&Action=AssumeRole&DurationSeconds=3600&Format=JSON"
          "&RoleArn=acs%3Aram%3A%3A123456789012%3Arole%2Facr-puller&RoleSessionName=acr-credential-proxy"
          "&SecurityToken=CAIS%2Btok%2Fen%3D&SignatureMethod=HMAC-SHA1"
          "&SignatureNonce=0123456789abcdef0123456789abcdef&SignatureVersion=1.0"
          "&Timestamp=2024-05-06T07%3A08%3A09Z&Version=2015-04-01");
    CHECK(v1_string_to_sign("POST", params) ==
          "POST&%2F&AccessKeyId%3DSTS.source%26Action%3DAssumeRole%26DurationSeconds%3D3600%26Format%3DJSON"
          "%26RoleArn%3Dacs%253Aram%253A%253A123456789012%253Arole%252Facr-puller"
          "%26RoleSessionName%3Dacr-credential-proxy%26SecurityToken%3DCAIS%252Btok%252Fen%253D"
          "%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D0123456789abcdef0123456789abcdef"
          "%26SignatureVersion%3D1.0%26Timestamp%3D2024-05-06T07%253A08%253A09Z%26Version%3D2015-04-01");
    CHECK(sign_v1("POST", params, "src-secret") == "Hc/cJxJL23x221TiOPztye86XzA=");
}

TEST_CASE("V1 keys on secret + '&' and depends on the method", "[alibaba][signature_v1]") {
    const string_pairs params = {{"Action", "AssumeRole"}};
    CHECK(sign_v1("POST", params, "s") != sign_v1("GET", params, "s"));
    CHECK(sign_v1("POST", params, "s") != sign_v1("POST", params, "s&"));
}
