// Unit tests of the tokenizer that need no shared data: clean-up rules (from
// Python's html.unescape / str.isspace / str.lower, which CLIP's clean-up
// uses), the byte table (from its definition), and BPE on a tiny hand-made
// vocabulary whose ids are worked out by hand in each test.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <string>
#include <unistd.h>

#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using fewstep::Tokenizer;
using fewstep::TokenizerError;
using Ids = std::vector<int64_t>;

namespace {

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("fewstep_tok_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void write_file(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

// Hand vocabulary. Merges by rank: 0 "a t</w>", 1 "c at</w>", 2 "c a", 3 "a a".
constexpr const char* kVocab = R"({"<|startoftext|>": 0, "<|endoftext|>": 1, "c": 2, "a": 3, "t": 4,
  "t</w>": 5, "a</w>": 6, "c</w>": 7, "ca": 8, "cat</w>": 9, "at</w>": 10, "s</w>": 11, "aa": 12,
  "\u0120": 13})";
constexpr const char* kMerges = "#version: 0.2\na t</w>\nc at</w>\nc a\na a\n";

fs::path hand_folder(const std::string& name) {
  const fs::path dir = fresh_dir(name);
  write_file(dir / "vocab.json", kVocab);
  write_file(dir / "merges.txt", kMerges);
  return dir;
}

}  // namespace

TEST(CleanText, UnescapesTwiceCollapsesWhitespaceAndLowercases) {
  EXPECT_EQ(fewstep::clean_text("&amp;lt;B&amp;gt;"), "<b>");  // pass 1: &lt;B&gt;, pass 2: <B>
  EXPECT_EQ(fewstep::clean_text("&amp;amp;"), "&");
  EXPECT_EQ(fewstep::clean_text("AT&T"), "at&t");
  EXPECT_EQ(fewstep::clean_text("&quot;Hi&quot; &apos;x&#39;"), "\"hi\" 'x'");
  EXPECT_EQ(fewstep::clean_text("  A\t\n b\u00a0&nbsp;c\u3000 "), "a b c");
  EXPECT_EQ(fewstep::clean_text(""), "");
  EXPECT_EQ(fewstep::clean_text(" \t "), "");
}

TEST(CleanText, NumericReferencesFollowHtml5) {
  EXPECT_EQ(fewstep::clean_text("&#65;&#x42;&#X63;"), "abc");
  EXPECT_EQ(fewstep::clean_text("&#128512;"), "\U0001F600");
  EXPECT_EQ(fewstep::clean_text("&#0;|&#x110000;|&#xD800;"), "\uFFFD|\uFFFD|\uFFFD");
  EXPECT_EQ(fewstep::clean_text("&#150;"), "\u2013");        // 0x96 read as Windows-1252
  EXPECT_EQ(fewstep::clean_text("a&#1;b&#xFFFF;c"), "abc");  // control and noncharacter dropped
  EXPECT_EQ(fewstep::clean_text("&#;&#x;&#xg"), "&#;&#x;&#xg");
}

TEST(CleanText, NamedReferenceEdgeCases) {
  EXPECT_EQ(fewstep::clean_text("&ampx &lt3"), "&x <3");       // legacy names need no ';'
  EXPECT_EQ(fewstep::clean_text("&apos"), "&apos");            // apos needs its ';'
  EXPECT_EQ(fewstep::clean_text("&copy; & ;"), "&copy; & ;");  // outside the small table
}

TEST(CleanText, UnicodeLowercaseAndInvalidUtf8) {
  EXPECT_EQ(fewstep::clean_text("ÀÉÎÕÜ ÇÑ ŁŽ"), "àéîõü çñ łž");
  EXPECT_EQ(fewstep::clean_text("a\xff"
                                "b"),
            "a\uFFFDb");
  // Python's str.lower: final sigma and İ -> i + U+0307.
  EXPECT_EQ(fewstep::clean_text("ΣΑΣ İ"), "σας i\u0307");
}

TEST(ByteTable, PrintableBytesMapToThemselvesOthersFrom256) {
  std::set<std::string> seen;
  for (int b = 0; b < 256; ++b) seen.insert(fewstep::byte_to_unicode(static_cast<uint8_t>(b)));
  EXPECT_EQ(seen.size(), 256u);
  EXPECT_EQ(fewstep::byte_to_unicode('a'), "a");
  EXPECT_EQ(fewstep::byte_to_unicode(0xE9), "\u00e9");
  // 0x00..0x20 are the first 33 non-printable bytes -> U+0100..U+0120.
  EXPECT_EQ(fewstep::byte_to_unicode(0x00), "\u0100");
  EXPECT_EQ(fewstep::byte_to_unicode(' '), "\u0120");
  // Then 0x7F..0xA0 (34 more) and 0xAD, the 68th -> U+0100 + 67.
  EXPECT_EQ(fewstep::byte_to_unicode(0x7F), "\u0121");
  EXPECT_EQ(fewstep::byte_to_unicode(0xAD), "\u0143");
}

TEST(HandVocab, ReadsFolderAndMergesByRank) {
  const Tokenizer tok = Tokenizer::from_path(hand_folder("merge"));
  EXPECT_EQ(tok.vocab_size(), 14);
  EXPECT_EQ(tok.bos_id(), 0);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.pad_id(), 1);
  // c a t</w>: ranks (c,a)=2, (a,t</w>)=0 -> c at</w>; then (c,at</w>)=1 -> cat</w> = 9.
  EXPECT_EQ(tok.encode("cat"), (Ids{0, 9, 1}));
  // Upper case is lowered; each word ends in </w>.
  EXPECT_EQ(tok.encode("CAT Cat"), (Ids{0, 9, 9, 1}));
  // c a t s</w>: only (c,a) has a rank -> ca t s</w> = 8 4 11.
  EXPECT_EQ(tok.encode("cats"), (Ids{0, 8, 4, 11, 1}));
  // c a</w>: no pair ranked -> 2 6.
  EXPECT_EQ(tok.encode("ca"), (Ids{0, 2, 6, 1}));
  // a a a</w>: (a,a) merges left to right once -> aa a</w> = 12 6.
  EXPECT_EQ(tok.bpe("aaa"), (std::vector<std::string>{"aa", "a</w>"}));
  EXPECT_EQ(tok.encode("aaa"), (Ids{0, 12, 6, 1}));
  // x</w> is not in the vocabulary -> <|endoftext|> (1), the unknown token.
  EXPECT_EQ(tok.encode("x"), (Ids{0, 1, 1}));
  EXPECT_EQ(tok.encode(""), (Ids{0, 1}));
  // Pre-tokenization: "cat's" -> "cat", "'s"; "'s" -> ' s</w> -> unknown ' (1), s</w> (11).
  EXPECT_EQ(tok.encode("cat's"), (Ids{0, 9, 1, 11, 1}));
}

// The in-memory entry point (what fuzz_tokenizer drives) is the file loader
// without the reads: same ids, and errors name the given file names.
TEST(HandVocab, FromTextMatchesFiles) {
  const Tokenizer files = Tokenizer::from_path(hand_folder("text"));
  const Tokenizer text = Tokenizer::from_vocab_merges_text(kVocab, kMerges, "v.json", "m.txt");
  for (const char* prompt : {"cat", "CAT Cat", "cats", "aaa", "cat's", "x", ""})
    EXPECT_EQ(text.encode(prompt), files.encode(prompt)) << prompt;
  try {
    Tokenizer::from_vocab_merges_text(kVocab, "#version: 0.2\na t</w>\n", "v.json", "m.txt");
    ADD_FAILURE() << "a truncated merge list must be refused";
  } catch (const TokenizerError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("m.txt: 1 merges leave 3 tokens of v.json unreachable", 0), 0u) << e.what();
  }
}

TEST(HandVocab, MergesWithoutHeaderAndWithCrlf) {
  const fs::path dir = fresh_dir("crlf");
  // The vocabulary without the tokens of the two merges left out ("ca", "aa").
  write_file(dir / "vocab.json", R"({"<|startoftext|>": 0, "<|endoftext|>": 1, "c": 2, "a": 3, "t": 4,
    "t</w>": 5, "a</w>": 6, "c</w>": 7, "cat</w>": 9, "at</w>": 10, "s</w>": 11, "\u0120": 13})");
  write_file(dir / "merges.txt", "a t</w>\r\nc at</w>\r\n\r\n");
  const Tokenizer tok = Tokenizer::from_vocab_merges(dir / "vocab.json", dir / "merges.txt");
  EXPECT_EQ(tok.encode("cat"), (Ids{0, 9, 1}));
  EXPECT_EQ(tok.encode("ca"), (Ids{0, 2, 6, 1}));  // "c a" is not a merge here
}

TEST(HandVocab, ModelFolderManifest) {
  const fs::path dir = fresh_dir("model");
  write_file(dir / "tok" / "v.json", kVocab);
  write_file(dir / "tok" / "m.txt", kMerges);
  write_file(dir / "model.json", R"({"tokenizer": {"vocab": "tok/v.json", "merges": "tok/m.txt"}})");
  EXPECT_EQ(Tokenizer::from_path(dir).encode("cat"), (Ids{0, 9, 1}));
  EXPECT_EQ(Tokenizer::from_path(dir / "model.json").encode("cat"), (Ids{0, 9, 1}));
}

TEST(HandVocab, PaddingAndTruncation) {
  Tokenizer tok = Tokenizer::from_path(hand_folder("pad"));
  std::vector<std::string> warnings;
  const fewstep::WarningSink sink = [&](const std::string& m) { warnings.push_back(m); };
  EXPECT_EQ(tok.encode_padded("cat", 5, sink), (Ids{0, 9, 1, 1, 1}));  // padded with EOS
  EXPECT_EQ(tok.encode_padded("cat", 3, sink), (Ids{0, 9, 1}));        // exact fit: no warning
  EXPECT_TRUE(warnings.empty());
  tok.set_pad_id(13);
  EXPECT_EQ(tok.encode_padded("cat", 5, sink), (Ids{0, 9, 1, 13, 13}));
  // BOS cat cat c a</w> cat EOS = 7 ids into 4: keeps BOS, cat, cat, EOS; drops 3.
  EXPECT_EQ(tok.encode_padded("cat cat ca cat", 4, sink), (Ids{0, 9, 9, 1}));
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("dropped the last 3 tokens"), std::string::npos) << warnings[0];
  EXPECT_THROW(tok.encode_padded("cat", 1, sink), TokenizerError);
}

TEST(Errors, OneLineMessagesNamingTheFile) {
  auto expect_error = [](auto&& load, const std::string& needle) {
    try {
      load();
      ADD_FAILURE() << "no error, expected one mentioning " << needle;
    } catch (const TokenizerError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(needle), std::string::npos) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    }
  };
  const fs::path dir = fresh_dir("errors");
  expect_error([&] { Tokenizer::from_path(dir / "missing"); }, (dir / "missing").string());
  expect_error([&] { Tokenizer::from_path(dir); }, dir.string());  // empty folder
  write_file(dir / "bad" / "vocab.json", "{not json");
  write_file(dir / "bad" / "merges.txt", kMerges);
  expect_error([&] { Tokenizer::from_path(dir / "bad"); }, (dir / "bad" / "vocab.json").string());
  write_file(dir / "nobos" / "vocab.json", R"({"<|endoftext|>": 0, "a": 1})");
  write_file(dir / "nobos" / "merges.txt", "");
  expect_error([&] { Tokenizer::from_path(dir / "nobos"); }, "<|startoftext|>");
  write_file(dir / "badmerge" / "vocab.json", kVocab);
  write_file(dir / "badmerge" / "merges.txt", "#version: 0.2\na t</w>\nabc\n");
  expect_error([&] { Tokenizer::from_path(dir / "badmerge"); }, "merges.txt: line 3");
  // A merges file that does not produce the vocabulary's merged tokens:
  // empty, truncated, or naming a token the vocabulary lacks.
  write_file(dir / "nomerges" / "vocab.json", kVocab);
  write_file(dir / "nomerges" / "merges.txt", "");
  expect_error([&] { Tokenizer::from_path(dir / "nomerges"); }, "nomerges/merges.txt: 0 merges leave 4 tokens");
  write_file(dir / "short" / "vocab.json", kVocab);
  write_file(dir / "short" / "merges.txt", "#version: 0.2\na t</w>\nc at</w>\n");
  expect_error([&] { Tokenizer::from_path(dir / "short"); }, "short/merges.txt: 2 merges leave 2 tokens");
  write_file(dir / "foreign" / "vocab.json", kVocab);
  write_file(dir / "foreign" / "merges.txt", "#version: 0.2\na t</w>\nc at</w>\nc a\na a\nt s</w>\n");
  expect_error([&] { Tokenizer::from_path(dir / "foreign"); }, "foreign/merges.txt: merge 5");
  write_file(dir / "nulltok" / "model.json", R"({"tokenizer": null})");
  expect_error([&] { Tokenizer::from_path(dir / "nulltok"); }, "tokenizer is null");
  write_file(dir / "short.gz", "not gzip, and far fewer than 48,894 merges");
  expect_error([&] { Tokenizer::from_path(dir / "short.gz"); }, (dir / "short.gz").string());
}
