#include "layerprobe/synth/synth.hpp"

#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <map>
#include <random>
#include <utility>

#include "layerprobe/core/common.hpp"
#include "layerprobe/text/sentencepiece.hpp"
#include "layerprobe/squad/squad.hpp"

namespace layerprobe {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// std::mt19937_64's output sequence is fixed by the C++ standard but the std
// distributions are not, so these draws keep the data identical across
// standard libraries.
class Random {
 public:
  explicit Random(std::uint64_t seed) : engine_(seed) {}

  // Uniform in [0, n); for our n < 100 the modulo bias is below 1e-17.
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(engine_() % n); }
  bool chance(double p) { return static_cast<double>(engine_() >> 11) * 0x1.0p-53 < p; }

  template <typename T>
  void shuffle(std::vector<T>& items) {
    for (std::size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[below(i)]);
  }

  // k distinct indices of [0, n), in random order.
  std::vector<std::size_t> distinct(std::size_t n, std::size_t k) {
    std::vector<std::size_t> indices(n);
    for (std::size_t i = 0; i < n; ++i) indices[i] = i;
    for (std::size_t i = 0; i < k; ++i) std::swap(indices[i], indices[i + below(n - i)]);
    indices.resize(k);
    return indices;
  }

 private:
  std::mt19937_64 engine_;
};

// A closed vocabulary of invented people, places and things. A few names carry
// accents so that answer offsets (in code points) and accent stripping are
// exercised, as real SQuAD text does.
const std::vector<std::string> kFirstNames = {
    "Alice", "Omar",  "Priya",  "Lucas", "Mei",    "Tomas", "Aisha", "Ivan",  "Nora",   "Diego",
    "Hana",  "Felix", "Leila",  "Marco", "Sofia",  "Kwame", "Elena", "Yuki",  "Oscar",  "Amara",
    "Bruno", "Clara", "Dmitri", "Ingrid", "Jonas", "Kiran", "Lena",  "Mateo", "Nadia",  "Pavel",
    "Rosa",  "Samir", "Tessa",  "Viktor", "Zara",  "José",  "Zoë",   "Renée", "Björn",  "Farah"};
const std::vector<std::string> kLastNames = {
    "Moreno",  "Okafor",  "Lindqvist", "Tanaka", "Novak",  "Haddad",   "Fischer", "Kowalski", "Mendes",
    "Petrov",  "Osei",    "Varga",     "Brennan", "Castillo", "Dubois", "Eriksen", "Farouk",  "Gallo",
    "Horvath", "Jansen",  "Kaur",      "Larsen", "Maddox", "Nakamura", "Olsen",   "Pereira",  "Quinn",
    "Rossi",   "Silva",   "Torres",    "Ueda",   "Vance",  "Weber",    "Yilmaz",  "Zeller",   "Núñez",
    "Müller",  "Aldana",  "Brandt",    "Conti"};
const std::vector<std::string> kCities = {
    "Tarville",    "Brindlemoor", "Carrowford",  "Dunmere",  "Eastholm",   "Fennick",    "Glenbarrow",
    "Harrowgate",  "Ilsworth",    "Juniper Falls", "Kestermouth", "Lowmarsh", "Millbrook",  "Northcliff",
    "Oakhaven",    "Pellham",     "Quarrington", "Ravensby", "Saltmere",   "Thornwick",  "Upfield",
    "Valebridge",  "Westerly",    "Yarrowdale",  "Port Aveline", "New Kessock", "Saint Orrin", "Ashcombe",
    "Bellmoor",    "Coldwater",   "Drumlin",     "Elmstead"};
const std::vector<std::string> kJobs = {
    "baker",      "engineer",    "nurse",     "architect", "pilot",     "teacher",    "chemist",
    "carpenter",  "librarian",   "translator", "surgeon",  "journalist", "gardener",  "accountant",
    "electrician", "photographer", "economist", "plumber",  "veterinarian", "geologist", "optician",
    "welder",     "astronomer",  "tailor"};
const std::vector<std::string> kEmployers = {
    "Orbit Labs",      "Blue Heron Press", "Kestrel Bank",    "Northwind Rail",   "Copperleaf Studio",
    "Granite Mutual",  "Lumen Hospital",   "Harbor Foods",    "Silverline Motors", "Pinecrest School",
    "Redwood Energy",  "Atlas Shipping",   "Meridian Clinic", "Foxglove Books",   "Summit Telecom",
    "Ironbridge Works", "Cobalt Systems",  "Willow Bakery",   "Starling Airways", "Marble Museum",
    "Tidewater Farms", "Beacon News",      "Falcon Optics",   "Juniper Theatre"};
const std::vector<std::string> kPossessions = {
    "red bicycle",  "small boat",     "old piano",     "vintage camera", "wooden canoe", "silver violin",
    "green tractor", "stone cottage", "telescope",     "yellow kayak",   "antique clock", "brass trumpet",
    "orange van",   "electric guitar", "apple orchard", "horse",         "glass greenhouse", "motorcycle",
    "chess set",    "sailboat"};
constexpr int kFirstYear = 1920, kYears = 85;

// What a paragraph can say about a person: one sentence per fact.
enum Fact { kBirth, kWork, kHome, kPossession, kFacts };

const std::array<std::array<const char*, 2>, kFacts> kSentences = {{
    {"{name} was born in {birth_city} in {birth_year}.", "{name} was born in {birth_year} in {birth_city}."},
    {"{name} works as {job_article} {job} at {employer}.", "{name} is {job_article} {job} at {employer}."},
    {"{name} lives in {home}.", "{name} now lives in {home}."},
    {"{name} owns {possession_article} {possession}.", "{name} has {possession_article} {possession}."},
}};

// A kind of question: the fact it asks about, the sentence slot that answers
// it, and its wordings.
struct Ask {
  Fact fact;
  const char* slot;
  std::array<const char*, 2> questions;
};

const std::array<Ask, 7> kAsks = {{
    {kBirth, "birth_city", {"Where was {name} born?", "In which city was {name} born?"}},
    {kBirth, "birth_year", {"When was {name} born?", "In what year was {name} born?"}},
    {kWork, "job", {"What does {name} do for a living?", "What is {name}'s job?"}},
    {kWork, "employer", {"Where does {name} work?", "Which company does {name} work for?"}},
    {kWork, "name", {"Who works at {employer}?", "Who is employed by {employer}?"}},
    {kHome, "home", {"Where does {name} live?", "In which city does {name} live?"}},
    {kPossession, "possession", {"What does {name} own?", "What does {name} have?"}},
}};

using Values = std::map<std::string, std::string>;

struct Person {
  Values values;  // every attribute, stated or not
  std::array<bool, kFacts> stated{};
};

struct Span {
  std::string text;
  std::size_t start = 0;  // code points from the start of the context
};

std::size_t code_points(const std::string& utf8) {
  std::size_t count = 0;
  for (unsigned char c : utf8) count += (c & 0xC0) != 0x80;
  return count;
}

// `pattern` with each {key} replaced by values[key], and where (in code points
// from the start) each value landed.
struct Filled {
  std::string text;
  std::map<std::string, std::size_t> offsets;
};

Filled fill(const std::string& pattern, const Values& values) {
  Filled out;
  std::size_t pos = 0;
  for (auto open = pattern.find('{'); open != std::string::npos; open = pattern.find('{', pos)) {
    auto close = pattern.find('}', open);
    auto key = pattern.substr(open + 1, close - open - 1);
    out.text += pattern.substr(pos, open - pos);
    out.offsets[key] = code_points(out.text);
    out.text += values.at(key);
    pos = close + 1;
  }
  out.text += pattern.substr(pos);
  return out;
}

std::string article(const std::string& noun) {
  return std::string("aeiou").find(noun.front()) != std::string::npos ? "an" : "a";
}

// `count` people whose every attribute differs from every other's, so that a
// span answers exactly one question about one person.
std::vector<Person> draw_people(Random& random, std::size_t count, double fact_probability) {
  auto first = random.distinct(kFirstNames.size(), count), last = random.distinct(kLastNames.size(), count);
  auto cities = random.distinct(kCities.size(), 2 * count), years = random.distinct(kYears, count);
  auto jobs = random.distinct(kJobs.size(), count), employers = random.distinct(kEmployers.size(), count);
  auto possessions = random.distinct(kPossessions.size(), count);
  std::vector<Person> people(count);
  for (std::size_t i = 0; i < count; ++i) {
    auto& v = people[i].values;
    v["name"] = kFirstNames[first[i]] + " " + kLastNames[last[i]];
    v["birth_city"] = kCities[cities[2 * i]];
    v["home"] = kCities[cities[2 * i + 1]];
    v["birth_year"] = std::to_string(kFirstYear + static_cast<int>(years[i]));
    v["job"] = kJobs[jobs[i]];
    v["job_article"] = article(v["job"]);
    v["employer"] = kEmployers[employers[i]];
    v["possession"] = kPossessions[possessions[i]];
    v["possession_article"] = article(v["possession"]);
    for (auto& stated : people[i].stated) stated = random.chance(fact_probability);
    if (std::none_of(people[i].stated.begin(), people[i].stated.end(), [](bool s) { return s; }))
      people[i].stated[random.below(kFacts)] = true;
  }
  return people;
}

// One paragraph: its people (the last one, never mentioned, is the subject of
// absent-entity questions), its context, and the span answering each
// (person, ask) pair the context states.
struct Paragraph {
  std::vector<Person> people;
  std::string context;
  std::map<std::pair<std::size_t, std::size_t>, Span> answers;
};

Paragraph draw_paragraph(Random& random, const SynthOptions& options) {
  Paragraph paragraph;
  auto mentioned = static_cast<std::size_t>(options.people_per_paragraph);
  paragraph.people = draw_people(random, mentioned + 1, options.fact_probability);
  paragraph.people.back().stated.fill(false);

  struct Sentence {
    Filled filled;
    std::size_t person;
    Fact fact;
  };
  std::vector<Sentence> sentences;
  for (std::size_t p = 0; p < mentioned; ++p)
    for (int f = 0; f < kFacts; ++f)
      if (paragraph.people[p].stated[f]) {
        const auto& pattern = kSentences[f][random.below(2)];
        sentences.push_back({fill(pattern, paragraph.people[p].values), p, static_cast<Fact>(f)});
      }
  random.shuffle(sentences);

  for (const auto& sentence : sentences) {
    if (!paragraph.context.empty()) paragraph.context += ' ';
    auto base = code_points(paragraph.context);
    paragraph.context += sentence.filled.text;
    for (std::size_t a = 0; a < kAsks.size(); ++a)
      if (kAsks[a].fact == sentence.fact)
        paragraph.answers[{sentence.person, a}] = {paragraph.people[sentence.person].values.at(kAsks[a].slot),
                                                   base + sentence.filled.offsets.at(kAsks[a].slot)};
  }
  return paragraph;
}

json answer_json(const Span& span) { return {{"text", span.text}, {"answer_start", span.start}}; }

// The question for (person, ask): answerable when the paragraph states the
// fact, otherwise impossible, with the same ask's answer about another person
// as its plausible answer (SQuAD 2.0's near miss) when there is one.
json question_json(Random& random, const Paragraph& paragraph, std::size_t person, std::size_t ask,
                   const std::string& id, bool several_answers) {
  const auto& wording = kAsks[ask].questions[random.below(2)];
  json qa = {{"id", id}, {"question", fill(wording, paragraph.people[person].values).text}};
  auto answer = paragraph.answers.find({person, ask});
  qa["is_impossible"] = answer == paragraph.answers.end();
  qa["answers"] = json::array();
  if (answer != paragraph.answers.end()) {
    auto copies = several_answers ? 1 + random.below(3) : 1;
    for (std::size_t i = 0; i < copies; ++i) qa["answers"].push_back(answer_json(answer->second));
    return qa;
  }
  std::vector<const Span*> near_misses;
  for (const auto& [key, span] : paragraph.answers)
    if (key.second == ask) near_misses.push_back(&span);
  if (!near_misses.empty())
    qa["plausible_answers"] = json::array({answer_json(*near_misses[random.below(near_misses.size())])});
  return qa;
}

// Up to `count` distinct questions about the paragraph, each impossible with
// probability unanswerable_fraction while both kinds remain.
json paragraph_questions(Random& random, const Paragraph& paragraph, int count, const SynthOptions& options,
                         const std::string& split, int& next_id) {
  // The last person is the one the paragraph never mentions.
  const std::size_t absent = paragraph.people.size() - 1;
  std::vector<std::pair<std::size_t, std::size_t>> answerable, unstated, absent_person;
  for (std::size_t p = 0; p < paragraph.people.size(); ++p)
    for (std::size_t a = 0; a < kAsks.size(); ++a)
      (paragraph.answers.count({p, a}) ? answerable : p == absent ? absent_person : unstated).emplace_back(p, a);
  random.shuffle(answerable);
  random.shuffle(unstated);
  random.shuffle(absent_person);

  json qas = json::array();
  for (int i = 0; i < count && !(answerable.empty() && unstated.empty() && absent_person.empty()); ++i) {
    bool want_impossible = random.chance(options.unanswerable_fraction);
    bool want_absent = random.chance(options.absent_person_share);
    auto* impossible = want_absent ? &absent_person : &unstated;
    if (impossible->empty()) impossible = want_absent ? &unstated : &absent_person;
    auto* pool = want_impossible ? impossible : &answerable;
    if (pool->empty()) pool = want_impossible ? &answerable : impossible;
    if (pool->empty()) pool = want_absent ? &unstated : &absent_person;
    auto [person, ask] = pool->back();
    pool->pop_back();
    char id[64];
    std::snprintf(id, sizeof id, "synth-%s-%06d", split.c_str(), next_id++);
    qas.push_back(question_json(random, paragraph, person, ask, id, split != "train"));
  }
  return qas;
}

void make_directories(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error("cannot create directory '" + dir.string() + "': " + ec.message());
}

std::uint64_t split_seed(std::uint64_t seed, const std::string& split) {
  // FNV-1a of the split name, so each split draws from its own stream.
  std::uint64_t hash = 1469598103934665603ull;
  for (unsigned char c : split) hash = (hash ^ c) * 1099511628211ull;
  return seed ^ hash;
}

}  // namespace

void validate(const SynthOptions& o) {
  auto require = [](bool ok, const std::string& what) {
    if (!ok) throw Error("synthetic data: " + what, 2);
  };
  require(o.train_questions >= 1, "--train-questions must be at least 1");
  require(o.dev_questions >= 1, "--dev-questions must be at least 1");
  require(o.people_per_paragraph >= 1 && o.people_per_paragraph <= 8, "--people-per-paragraph must be 1..8");
  require(o.questions_per_paragraph >= 1, "--questions-per-paragraph must be at least 1");
  require(o.paragraphs_per_article >= 1, "--paragraphs-per-article must be at least 1");
  require(o.unanswerable_fraction >= 0 && o.unanswerable_fraction <= 1, "--unanswerable-fraction must be in [0, 1]");
  require(o.fact_probability > 0 && o.fact_probability <= 1, "--fact-probability must be in (0, 1]");
  require(o.absent_person_share >= 0 && o.absent_person_share <= 1, "--absent-person-share must be in [0, 1]");
}

json generate_synthetic_squad(const std::string& split, int questions, const SynthOptions& options) {
  validate(options);
  Random random(split_seed(options.seed, split));
  json articles = json::array();
  int next_id = 0;
  while (next_id < questions) {
    if (articles.empty() || articles.back()["paragraphs"].size() == static_cast<std::size_t>(options.paragraphs_per_article))
      articles.push_back({{"title", "Synthetic_" + split + "_" + std::to_string(articles.size() + 1)},
                          {"paragraphs", json::array()}});
    auto paragraph = draw_paragraph(random, options);
    auto count = std::min(options.questions_per_paragraph, questions - next_id);
    auto qas = paragraph_questions(random, paragraph, count, options, split, next_id);
    articles.back()["paragraphs"].push_back({{"context", paragraph.context}, {"qas", std::move(qas)}});
  }
  return {{"version", "v2.0"}, {"data", std::move(articles)}};
}

void write_synthetic_squad(const fs::path& output_dir, const SynthOptions& options) {
  validate(options);
  make_directories(output_dir);
  for (const auto& [split, questions] : {std::pair<std::string, int>{"train", options.train_questions},
                                         std::pair<std::string, int>{"dev", options.dev_questions}}) {
    auto path = output_dir / (split + "-v2.0.json");
    write_file_atomically(path, generate_synthetic_squad(split, questions, options).dump() + "\n");
    spdlog::info("wrote {} ({} questions)", path.string(), questions);
  }
}

namespace {

// Text as AlbertTokenizer hands it to SentencePiece (NFKD without combining
// marks, lower case), on one line, so the vocabulary covers what it will see.
std::string vocabulary_text(const std::string& text, const fs::path& source) {
  utf8proc_uint8_t* mapped = nullptr;
  auto options = static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPAT | UTF8PROC_DECOMPOSE |
                                                UTF8PROC_STRIPMARK | UTF8PROC_CASEFOLD);
  auto length = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                             static_cast<utf8proc_ssize_t>(text.size()), &mapped, options);
  if (length < 0) throw Error("invalid UTF-8 in '" + source.string() + "': " + utf8proc_errmsg(length));
  std::string out(reinterpret_cast<char*>(mapped), static_cast<std::size_t>(length));
  std::free(mapped);
  for (auto& c : out)
    if (c == '\n' || c == '\r') c = ' ';
  return out + "\n";
}

// The questions and (once each) contexts of the SQuAD files, one per line.
std::string vocabulary_corpus(const std::vector<fs::path>& squad_files) {
  std::string corpus;
  for (const auto& file : squad_files) {
    const std::string* previous_context = nullptr;
    auto dataset = load_squad(file);
    for (const auto& example : dataset.examples) {
      corpus += vocabulary_text(example.question_text, file);
      if (!previous_context || *previous_context != example.context_text())
        corpus += vocabulary_text(example.context_text(), file);
      previous_context = &example.context_text();
    }
  }
  return corpus;
}

// A private scratch directory, removed with everything in it.
class ScratchDir {
 public:
  ScratchDir() {
    auto pattern = (fs::temp_directory_path() / "layerprobe-vocab-XXXXXX").string();
    // SentencePiece's trainer splits its flags at spaces.
    if (pattern.find_first_of(" \t") != std::string::npos)
      throw Error("the temporary directory '" + pattern + "' contains whitespace, which SentencePiece's trainer " +
                  "cannot take; set TMPDIR to a directory without spaces");
    pattern_ = pattern;
    if (!mkdtemp(pattern.data())) throw Error("cannot create a temporary directory '" + pattern_ + "'");
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const fs::path& path() const { return path_; }
  const std::string& pattern() const { return pattern_; }  // the mkdtemp template it came from

 private:
  fs::path path_;
  std::string pattern_;
};

}  // namespace

void train_squad_vocabulary(const std::vector<fs::path>& squad_files, int vocab_size, const fs::path& output_model) {
  if (squad_files.empty()) throw Error("train-vocab: give at least one SQuAD file with --input", 2);
  if (vocab_size < 16) throw Error("train-vocab: --vocab-size must be at least 16", 2);
  ScratchDir scratch;
  auto corpus = scratch.path() / "corpus.txt";
  write_file_atomically(corpus, vocabulary_corpus(squad_files));
  // ALBERT's special and punctuation pieces at ALBERT's ids (the quote
  // doubled for the trainer's CSV list syntax); no sentence sampling (the
  // default input_sentence_size=0 keeps every line).
  train_sentencepiece("--input=" + corpus.string() + " --model_prefix=" + (scratch.path() / "spiece").string() +
                      " --model_type=unigram --vocab_size=" + std::to_string(vocab_size) +
                      " --hard_vocab_limit=false --pad_id=0 --unk_id=1 --bos_id=-1 --eos_id=-1"
                      " --control_symbols=[CLS],[SEP],[MASK] --user_defined_symbols=(,),\"\"\"\",-,.,–,£,€"
                      " --max_sentence_length=65536 --minloglevel=" +
                      (spdlog::should_log(spdlog::level::debug) ? "0" : "1"));
  auto model = read_file(scratch.path() / "spiece.model");
  // The model records its trainer flags, scratch paths included; writing the
  // scratch directory's fixed-length template over its random name keeps the
  // file a function of the input (and the protobuf's length prefixes valid).
  for (auto at = model.find(scratch.path().string()); at != std::string::npos;
       at = model.find(scratch.path().string(), at))
    model.replace(at, scratch.pattern().size(), scratch.pattern());
  if (output_model.has_parent_path()) make_directories(output_model.parent_path());
  write_file_atomically(output_model, model);
  spdlog::info("wrote {} ({} pieces)", output_model.string(), SentencePieceModel(output_model).size());
}

}  // namespace layerprobe
