// The JSON-lines field extractor of `longhaul prep`.
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "data/json_field.h"
#include "data/length_histogram.h"
#include "data/tokenizer.h"

namespace longhaul::data {
namespace {

JsonFieldStatus get(const std::string& line, std::string& v, const std::string& field = "text") {
  return json_string_field(line, field, v);
}

TEST(DataJson, StringFieldWithEscapes) {
  std::string v;
  ASSERT_EQ(get(R"({"id": 3, "text": "a\nb\t\"q\" \\ \/ \u00e9 \ud83d\ude00", "x": [1, {"text": 2}]})", v),
            JsonFieldStatus::Ok);
  EXPECT_EQ(v, "a\nb\t\"q\" \\ / \xc3\xa9 \xf0\x9f\x98\x80");
  ASSERT_EQ(get(R"(  {"meta": {"text": "inner"}, "text": "outer"}  )", v), JsonFieldStatus::Ok);
  EXPECT_EQ(v, "outer") << "only top-level keys count";
  ASSERT_EQ(get(R"({"text": ""})", v), JsonFieldStatus::Ok);
  EXPECT_EQ(v, "");
  ASSERT_EQ(get(R"({"body": "x", "n": -1.5e+3, "t": true, "f": false, "z": null})", v, "body"), JsonFieldStatus::Ok);
  EXPECT_EQ(v, "x");
}

TEST(DataJson, BadRecords) {
  std::string v, err;
  EXPECT_EQ(get(R"({"other": "x"})", v), JsonFieldStatus::Missing);
  EXPECT_EQ(get(R"({"text": 5})", v), JsonFieldStatus::NotAString);
  EXPECT_EQ(get(R"(["text"])", v), JsonFieldStatus::NotAnObject);
  EXPECT_EQ(get(R"("text")", v), JsonFieldStatus::NotAnObject);
  for (const char* bad : {R"({"text": "x")", R"({"text": "x"} trailing)", R"({"text" "x"})", R"({text: "x"})",
                          R"({"text": "\q"})", R"({"text": "\ud800"})", R"({"text": 01})", "{\"text\": \"a\x01\"}",
                          R"({"a": [1, 2,]})", R"({"a": tru})", ""})
    EXPECT_EQ(json_string_field(bad, "text", v, &err), JsonFieldStatus::Invalid) << bad;
  EXPECT_EQ(json_string_field(std::string(100000, '['), "text", v, &err), JsonFieldStatus::Invalid);
  EXPECT_NE(err.find("nesting deeper"), std::string::npos) << err;
  // A line that is not JSON at all names what it found, not "bad number".
  for (const auto& [line, what] : {std::pair<std::string, std::string>{"hello", "found 'h' at byte 0"},
                                   {R"({"text": x})", "found 'x' at byte 9"},
                                   {R"({"a": [1, )", "found the end of the line"},
                                   {"\x01", "found byte 0x01 at byte 0"}}) {
    err.clear();
    EXPECT_EQ(json_string_field(line, "text", v, &err), JsonFieldStatus::Invalid) << line;
    EXPECT_NE(err.find(what), std::string::npos) << line << ": " << err;
    EXPECT_EQ(err.find("bad number"), std::string::npos) << line << ": " << err;
  }
}

TEST(DataJson, ByteTokenizerAndHistogram) {
  auto tok = make_tokenizer("bytes");
  EXPECT_EQ(tok->vocab_size(), 257);
  EXPECT_EQ(tok->eos_id(), 256);
  std::vector<int32_t> out;
  tok->encode("A\xff", 2, out);
  EXPECT_EQ(out, (std::vector<int32_t>{65, 255}));
  LengthHistogram h;
  h.add_all({0, 1, 2, 3, 4, 1000});
  EXPECT_EQ(h.empty(), 1);
  EXPECT_EQ(h.docs(), (std::vector<int64_t>{1, 2, 1, 0, 0, 0, 0, 0, 0, 1}));
  EXPECT_EQ(h.tokens()[1], 5);
  EXPECT_NE(h.table().find("[2^9, 2^10)"), std::string::npos);
}

}  // namespace
}  // namespace longhaul::data
