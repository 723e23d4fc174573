/* test_common.c - buf, time, crypto and json helpers. */
#include "tests/unit/unit.h"

#include <float.h>
#include <stdlib.h>

#include "common/buf.h"
#include "common/crypto.h"
#include "common/err.h"
#include "common/json.h"
#include "common/parse.h"
#include "common/timeutil.h"

static void buf_grows_and_stays_terminated(void)
{
    struct buf b;
    int i;

    buf_init(&b);
    for (i = 0; i < 1000; i++)
        buf_printf(&b, "%d,", i);
    ASSERT_EQ(b.len, strlen(b.data));
    ASSERT_TRUE(strncmp(b.data, "0,1,2,", 6) == 0);
    buf_reset(&b);
    ASSERT_EQ(b.len, 0);
    ASSERT_STR_EQ(b.data, "");
    buf_release(&b);
}

static void rfc3339_round_trips(void)
{
    char s[TIME_RFC3339_LEN];
    int64_t ms = 0;

    time_format_rfc3339(INT64_C(1795694400123), s);
    ASSERT_STR_EQ(s, "2026-11-26T12:00:00.123Z");
    ASSERT_EQ(time_parse_rfc3339(s, &ms), 0);
    ASSERT_EQ(ms, INT64_C(1795694400123));
    ASSERT_EQ(time_parse_rfc3339("2026-11-26T13:00:00+01:00", &ms), 0);
    ASSERT_EQ(ms, INT64_C(1795694400000));
    ASSERT_EQ(time_parse_rfc3339("2026-11-26 12:00:00", &ms), ERR_INVALID);
    ASSERT_EQ(time_parse_rfc3339("2026-11-26T12:00:00Zjunk", &ms), ERR_INVALID);
}

static void sha256_matches_known_vector(void)
{
    char hex[CRYPTO_SHA256_HEX_LEN];

    crypto_sha256_hex("abc", 3, hex);
    ASSERT_STR_EQ(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ASSERT_TRUE(crypto_equal("same", "same"));
    ASSERT_TRUE(!crypto_equal("same", "sane"));
    ASSERT_TRUE(!crypto_equal("same", "samesame"));
}

static void json_parse_rejects_trailing_garbage(void)
{
    const char good[] = "{\"a\": 1} ";
    const char bad[] = "{\"a\": 1} x";
    const char nul[] = "{\"a\": 1}\0{}";
    cJSON *j;

    j = json_parse(good, strlen(good));
    ASSERT_TRUE(j != NULL);
    cJSON_Delete(j);
    ASSERT_TRUE(json_parse(bad, strlen(bad)) == NULL);
    ASSERT_TRUE(json_parse(nul, sizeof(nul) - 1) == NULL);
}

/* Found by fuzz_json: cJSON reads "1e999" as infinity, printed as null. */
static void json_parse_refuses_infinite_numbers(void)
{
    const char *bad[] = { "1e999", "[1, -1e400]", "{\"a\": {\"b\": [2e308]}}" };
    const char ok[] = "[1.7976931348623157e308, -1e-400]";
    cJSON *j;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ASSERT_TRUE(json_parse(bad[i], strlen(bad[i])) == NULL);
    j = json_parse(ok, strlen(ok));
    ASSERT_TRUE(j != NULL);
    cJSON_Delete(j);
}

static void json_int_checks_range_and_fraction(void)
{
    cJSON *n = cJSON_CreateNumber(2.5);
    int64_t v = 0;

    ASSERT_TRUE(!json_int(n, 0, 10, &v));
    cJSON_SetNumberValue(n, 11);
    ASSERT_TRUE(!json_int(n, 0, 10, &v));
    cJSON_SetNumberValue(n, 10);
    ASSERT_TRUE(json_int(n, 0, 10, &v));
    ASSERT_EQ(v, 10);
    cJSON_Delete(n);
}

/* Strings written as text come out as cJSON prints them. */
static void json_buf_string_escapes_as_cjson(void)
{
    const char *cases[] = { "",
                            "plain",
                            "q\"uote",
                            "back\\slash",
                            "tab\tnl\ncr\r",
                            "\b\f\x01\x1f",
                            "caf\xc3\xa9 \xe2\x82\xac",
                            "</script>" };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *str = cJSON_CreateString(cases[i]);
        char *want = json_print(str);
        struct buf b;

        buf_init(&b);
        json_buf_string(&b, cases[i]);
        ASSERT_STR_EQ(b.data, want);
        buf_release(&b);
        free(want);
        cJSON_Delete(str);
    }
}

/* json_print() writes what cJSON_PrintUnformatted() writes (where that
 * reads back exactly: see the next test). */
static void json_print_matches_cjson(void)
{
    const char *docs[] = {
        "{}",
        "[]",
        "null",
        "true",
        "\"s\"",
        "{\"a\":1,\"b\":[1,2,{\"c\":null}],\"d\":{\"e\":false,\"f\":true}}",
        "[0,-1,2147483647,2147483648,-2147483649,1700000000000,999999999999999,1e15,1e16,"
        "123456789012345678,0.1,-0.5,1.5e-7,3.141592653589793,1e300,-1e-300,2.5e-320]",
        "{\"k\\\"q\":\"tab\\tnl\\n\\u0001 caf\u00e9\",\"\":\"\"}",
    };
    size_t i;

    for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        cJSON *doc = cJSON_Parse(docs[i]);
        char *want;
        char *got;

        ASSERT_TRUE(doc != NULL);
        want = cJSON_PrintUnformatted(doc);
        got = json_print(doc);
        ASSERT_STR_EQ(got, want);
        free(got);
        cJSON_free(want);
        cJSON_Delete(doc);
    }
    {
        cJSON *z = cJSON_CreateNumber(-0.0);
        char *want = cJSON_PrintUnformatted(z);
        char *got = json_print(z);

        ASSERT_STR_EQ(got, want);
        free(got);
        cJSON_free(want);
        cJSON_Delete(z);
    }
}

/* Found by fuzz_json: cJSON's "%1.15g" text is kept when it reads back
 * within an epsilon, so 2^53 came back as 9007199254740990, and the largest
 * doubles, rounded up past DBL_MAX, as infinity (a metric point of
 * 1.7976931348623157e308 came back as null and its batch was refused). */
static void json_print_round_trips_every_double(void)
{
    const double values[] = { DBL_MAX, -DBL_MAX, 1.7976931348623155e308, 9007199254740992.0, 0.1,
                              1e300,   5e-324,   123456789012345678.0,   0.1 + 0.2 };
    size_t i;

    for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        cJSON *n = cJSON_CreateNumber(values[i]);
        char *text = json_print(n);
        cJSON *back = json_parse(text, strlen(text));

        ASSERT_TRUE(back != NULL && cJSON_IsNumber(back));
        ASSERT_TRUE(back->valuedouble == values[i]);
        free(text);
        cJSON_Delete(back);
        cJSON_Delete(n);
    }
}

/* Found by fuzz_query: "limit=%0D5" was limit 5 (strtoll skips any white
 * space, and only ' ' and '\t' were refused). */
static void parse_int64_takes_only_plain_integers(void)
{
    const char *bad[] = { "",    " 5",  "\t5", "\r5", "\n5",
                          "\v5", "\f5", "+5",  "5 ",  "0x5",
                          "-",   "--5", "- 5", "5e0", "9223372036854775808" };
    int64_t v = 7;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ASSERT_TRUE(!parse_int64(bad[i], INT64_MIN, INT64_MAX, &v));
    ASSERT_EQ(v, 7);
    ASSERT_TRUE(parse_int64("-9223372036854775808", INT64_MIN, INT64_MAX, &v));
    ASSERT_TRUE(v == INT64_MIN);
    ASSERT_TRUE(parse_int64("007", 0, 10, &v));
    ASSERT_EQ(v, 7);
}

UNIT_LIST(common_tests) = {
    { "common/parse_int64_takes_only_plain_integers", parse_int64_takes_only_plain_integers },
    { "common/json_print_round_trips_every_double", json_print_round_trips_every_double },
    { "common/json_parse_refuses_infinite_numbers", json_parse_refuses_infinite_numbers },
    { "common/buf_grows_and_stays_terminated", buf_grows_and_stays_terminated },
    { "common/rfc3339_round_trips", rfc3339_round_trips },
    { "common/sha256_matches_known_vector", sha256_matches_known_vector },
    { "common/json_parse_rejects_trailing_garbage", json_parse_rejects_trailing_garbage },
    { "common/json_int_checks_range_and_fraction", json_int_checks_range_and_fraction },
    { "common/json_buf_string_escapes_as_cjson", json_buf_string_escapes_as_cjson },
    { "common/json_print_matches_cjson", json_print_matches_cjson },
    { NULL, NULL },
};
