/* The happy paths of every function of the C API, on one database: open, items, interactions,
 * recommend and its accessors, history, stats, check, tokenization, delete, flush, close,
 * reopen. Built twice by run-tests.sh: against the shared and the static library. */
#include "check.h"

#include <math.h>

static const char *ITEMS_JSONL =
    "{\"key\": \"m1\", \"title\": \"Toy Story\", \"attributes\": {\"year\": \"1995\"}, "
    "\"vectors\": {\"v\": [1.0, 0.0, 0.0, 0.1]}}\n"
    "{\"key\": \"m2\", \"title\": \"Heat\", \"vectors\": {\"v\": [0.9, 0.1, 0.0, 0.2]}}\n"
    "\n"
    "{\"key\": \"m3\", \"title\": \"Casino\", \"vectors\": {\"v\": [0.0, 1.0, 0.0, 0.3]}}\n"
    "{\"key\": \"m4\", \"vectors\": {\"v\": [0.1, 0.9, 0.1, 0.4]}}\n"
    "{\"key\": \"m5\", \"vectors\": {\"v\": [0.0, 0.0, 1.0, 0.5]}}\n"
    "{\"key\": \"m6\", \"vectors\": {\"v\": [0.0, 0.1, 0.9, 0.6]}}\n";

static const char *EVENTS_JSONL =
    "{\"user\": \"bob\", \"item\": \"m2\", \"timestamp\": 10}\n"
    "{\"user\": \"bob\", \"item\": \"m3\", \"timestamp\": 11, \"kind\": \"view\"}\n"
    "{\"user\": \"carol\", \"item\": \"m2\", \"timestamp\": 12, \"weight\": 2.5}\n"
    "{\"user\": \"carol\", \"item\": \"m3\", \"timestamp\": 13}\n"
    "{\"user\": \"dave\", \"item\": \"m2\", \"timestamp\": 14}\n";

int main(void) {
  const char *dir = make_temp_dir();
  char path[256], file[256];
  temp_path(path, sizeof path, "db");

  CHECK(strcmp(convergedb_version(), "0.1.0") == 0, "convergedb_version is 0.1.0");
  CHECK(strcmp(convergedb_status_name(CONVERGEDB_CLOSED), "CONVERGEDB_CLOSED") == 0,
        "convergedb_status_name names CLOSED");
  CHECK(CONVERGEDB_OK == 0 && CONVERGEDB_CLOSED == 24 && CONVERGEDB_OTHER == 27,
        "status values are the documented ones");

  convergedb_options opts = convergedb_options_default();
  CHECK(opts.durability == CONVERGEDB_DURABILITY_BUFFERED && opts.create_if_missing &&
            opts.flush_every_ms == 500 && opts.refresh_workers >= 1 && opts.refresh_workers <= 8,
        "convergedb_options_default");
  opts.durability = CONVERGEDB_DURABILITY_SYNC;

  convergedb_db *db = NULL;
  EXPECT_OK(convergedb_db_open(path, &opts, &db), "open a new database (sync)");
  CHECK(db != NULL, "open wrote the handle");
  CHECK(strcmp(convergedb_last_error_message(), "") == 0, "last error is empty after OK");

  EXPECT_OK(convergedb_items_put_jsonl(db, ITEMS_JSONL), "items_put_jsonl: 6 items");
  EXPECT_OK(convergedb_item_put(db, "m7", "Fargo", "snow", "{\"year\": \"1996\"}",
                                "{\"v\": [0.5, 0.5, 0.0, 0.7]}"),
            "item_put with attributes and vectors");
  EXPECT_OK(convergedb_item_put(db, "m8", "", "", NULL, NULL), "item_put with NULL JSON");

  char *json = NULL;
  EXPECT_OK(convergedb_item_get_json(db, "m7", &json), "item_get_json");
  CHECK(json != NULL && strstr(json, "\"title\":\"Fargo\"") && strstr(json, "\"1996\""),
        "item JSON holds the title and attribute");
  convergedb_string_free(json);

  EXPECT_OK(convergedb_interaction_record(db, "alice", "m1", 1, "view", 1.0f),
            "interaction_record with kind");
  EXPECT_OK(convergedb_interaction_record(db, "alice", "m3", 2, NULL, 1.0f),
            "interaction_record without kind");
  EXPECT_OK(convergedb_interactions_record_jsonl(db, EVENTS_JSONL),
            "interactions_record_jsonl: 5 events");

  convergedb_recommendation *rec = NULL;
  EXPECT_OK(convergedb_recommend(db, "alice", 3, &rec), "recommend alice k=3");
  CHECK(convergedb_recommendation_len(rec) == 3, "3 items recommended");
  CHECK(strcmp(convergedb_recommendation_item_key(rec, 0), "m2") == 0,
        "m2 (3 interactions) first, alice's m3 excluded");
  CHECK(convergedb_recommendation_item_score(rec, 0) == 3.0, "score of m2 is 3");
  CHECK(strcmp(convergedb_recommendation_source(rec), "popularity") == 0, "source popularity");
  CHECK(!convergedb_recommendation_stale(rec), "a popularity answer is not stale");
  CHECK(convergedb_recommendation_history_version(rec) == 2, "alice's history version is 2");
  CHECK(convergedb_recommendation_item_key(rec, 3) == NULL, "item_key out of range is NULL");
  CHECK(isnan(convergedb_recommendation_item_score(rec, 99)), "score out of range is NaN");
  for (size_t i = 0; i < convergedb_recommendation_len(rec); i++) {
    const char *key = convergedb_recommendation_item_key(rec, i);
    CHECK(strcmp(key, "m1") != 0 && strcmp(key, "m3") != 0, "no item of alice's history");
  }
  convergedb_recommendation_free(rec);

  rec = NULL;
  EXPECT_OK(convergedb_recommend(db, "nobody", 100, &rec), "recommend an unknown user");
  CHECK(convergedb_recommendation_len(rec) == 8, "unknown user gets all 8 items");
  CHECK(strcmp(convergedb_recommendation_item_key(rec, 0), "m2") == 0 ||
            strcmp(convergedb_recommendation_item_key(rec, 0), "m3") == 0,
        "a most popular item (m2 or m3) first");
  convergedb_recommendation_free(rec);

  json = NULL;
  EXPECT_OK(convergedb_history_json(db, "alice", &json), "history_json");
  CHECK(json && strstr(json, "\"user\":\"alice\"") && strstr(json, "\"kind\":\"view\""),
        "history JSON holds the user and kind");
  convergedb_string_free(json);

  json = NULL;
  EXPECT_OK(convergedb_stats_json(db, &json), "stats_json");
  CHECK(json && strstr(json, "\"items\":8") && strstr(json, "\"interactions\":7") &&
            strstr(json, "\"durability\":\"sync\""),
        "stats: 8 items, 7 interactions, sync");
  convergedb_string_free(json);

  /* Tokenization: 2 levels x 4 codes over vector "v". */
  EXPECT_OK(convergedb_tokenize(db, "v", 2, 4, 42), "tokenize v 2x4");
  uint16_t codes[8] = {0};
  size_t len = 99;
  EXPECT_OK(convergedb_sid(db, "m1", codes, 8, &len), "sid m1");
  CHECK(len == 2 && codes[0] < 4 && codes[1] < 4, "m1 has 2 codes below 4");
  len = 99;
  EXPECT_OK(convergedb_sid(db, "m8", codes, 8, &len), "sid of an item without vector");
  CHECK(len == 0, "no codes for m8");

  uint16_t first[8];
  size_t first_len = 0;
  EXPECT_OK(convergedb_allowed_next(db, NULL, 0, first, 8, &first_len), "allowed_next root");
  CHECK(first_len >= 1 && first_len <= 4, "1 to 4 first codes allowed");
  uint16_t m1_codes[2];
  size_t m1_len = 0;
  EXPECT_OK(convergedb_sid(db, "m1", m1_codes, 2, &m1_len), "sid m1 exact capacity");
  uint16_t next[8];
  size_t next_len = 0;
  EXPECT_OK(convergedb_allowed_next(db, m1_codes, 1, next, 8, &next_len),
            "allowed_next after m1's first code");
  int found = 0;
  for (size_t i = 0; i < next_len; i++) {
    found |= next[i] == m1_codes[1];
  }
  CHECK(found, "m1's second code is allowed after its first");
  next_len = 99;
  EXPECT_OK(convergedb_allowed_next(db, m1_codes, 2, next, 8, &next_len),
            "allowed_next after a full tuple");
  CHECK(next_len == 0, "nothing follows a full tuple");

  EXPECT_OK(convergedb_item_put(db, "m9", "new", "", NULL, "{\"v\": [1.0, 0.0, 0.0, 0.0]}"),
            "put an item after tokenize");
  len = 0;
  EXPECT_OK(convergedb_sid(db, "m9", codes, 8, &len), "sid of the new item");
  CHECK(len == 2, "the new item got codes on put");

  temp_path(file, sizeof file, "sid.json");
  EXPECT_OK(convergedb_sid_export(db, file), "sid_export");
  EXPECT_OK(convergedb_sid_import(db, file), "sid_import of the exported file");

  EXPECT_OK(convergedb_item_delete(db, "m2"), "item_delete m2");
  json = NULL;
  EXPECT(convergedb_item_get_json(db, "m2", &json), CONVERGEDB_UNKNOWN_ITEM,
         "item_get_json of a deleted item");
  rec = NULL;
  EXPECT_OK(convergedb_recommend(db, "dave", 10, &rec), "recommend after delete");
  for (size_t i = 0; i < convergedb_recommendation_len(rec); i++) {
    CHECK(strcmp(convergedb_recommendation_item_key(rec, i), "m2") != 0, "m2 is gone");
  }
  convergedb_recommendation_free(rec);

  json = NULL;
  EXPECT_OK(convergedb_check_json(db, &json), "check_json");
  CHECK(json && strstr(json, "\"clean\":true") && strstr(json, "\"problems\":[]"),
        "check is clean");
  convergedb_string_free(json);

  bool idle = false;
  EXPECT_OK(convergedb_wait_idle(db, 1000, &idle), "wait_idle with nothing queued");
  CHECK(idle, "the refresh queue is idle (no model was ever attached)");

  EXPECT_OK(convergedb_db_flush(db), "flush");
  EXPECT_OK(convergedb_db_close(db), "close");
  convergedb_db_free(db);

  db = NULL;
  EXPECT_OK(convergedb_db_open(path, NULL, &db), "reopen with default options");
  json = NULL;
  EXPECT_OK(convergedb_stats_json(db, &json), "stats after reopen");
  CHECK(json && strstr(json, "\"items\":8") && strstr(json, "\"deleted_items\":1"),
        "8 live items and 1 deleted persisted");
  convergedb_string_free(json);
  len = 0;
  EXPECT_OK(convergedb_sid(db, "m9", codes, 8, &len), "codes persisted");
  CHECK(len == 2, "m9 still has 2 codes");
  convergedb_db_free(db); /* free without close closes too */

  (void)dir;
  return finish("test_api");
}
