/* Every error path of the C API: NULL for each pointer argument, invalid UTF-8 for each
 * string, bad k, unknown users and items, bad vectors, corrupt JSON, bad options, a locked
 * database, small buffers, use after close, double close and the NULL no-ops. Out-parameters
 * must be untouched on error. */
#include "check.h"

#include <stdint.h>

#define BAD "\xff\xfe" /* not UTF-8 */

static convergedb_db *open_db(const char *path) {
  convergedb_db *db = NULL;
  if (convergedb_db_open(path, NULL, &db) != CONVERGEDB_OK) {
    printf("FAIL - cannot open %s: %s\n", path, convergedb_last_error_message());
    exit(1);
  }
  return db;
}

static void null_arguments(convergedb_db *db) {
  const convergedb_status N = CONVERGEDB_NULL_ARGUMENT;
  convergedb_db *out_db = (convergedb_db *)0x1;
  convergedb_recommendation *rec = (convergedb_recommendation *)0x1;
  char *json = (char *)0x1;
  uint16_t codes[4];
  size_t len = 77;
  EXPECT(convergedb_db_open(NULL, NULL, &out_db), N, "db_open path NULL");
  EXPECT(convergedb_db_open("x", NULL, NULL), N, "db_open out NULL");
  CHECK(out_db == (convergedb_db *)0x1, "db_open left *out untouched");
  EXPECT(convergedb_db_close(NULL), N, "db_close NULL");
  EXPECT(convergedb_db_flush(NULL), N, "db_flush NULL");
  EXPECT(convergedb_stats_json(NULL, &json), N, "stats_json db NULL");
  EXPECT(convergedb_stats_json(db, NULL), N, "stats_json out NULL");
  EXPECT(convergedb_check_json(NULL, &json), N, "check_json db NULL");
  EXPECT(convergedb_check_json(db, NULL), N, "check_json out NULL");
  EXPECT(convergedb_item_put(NULL, "k", "", "", NULL, NULL), N, "item_put db NULL");
  EXPECT(convergedb_item_put(db, NULL, "", "", NULL, NULL), N, "item_put key NULL");
  EXPECT(convergedb_item_put(db, "k", NULL, "", NULL, NULL), N, "item_put title NULL");
  EXPECT(convergedb_item_put(db, "k", "", NULL, NULL, NULL), N, "item_put description NULL");
  EXPECT(convergedb_items_put_jsonl(NULL, "{\"key\":\"k\"}"), N, "items_put_jsonl db NULL");
  EXPECT(convergedb_items_put_jsonl(db, NULL), N, "items_put_jsonl jsonl NULL");
  EXPECT(convergedb_item_get_json(NULL, "i1", &json), N, "item_get_json db NULL");
  EXPECT(convergedb_item_get_json(db, NULL, &json), N, "item_get_json key NULL");
  EXPECT(convergedb_item_get_json(db, "i1", NULL), N, "item_get_json out NULL");
  EXPECT(convergedb_item_delete(NULL, "i1"), N, "item_delete db NULL");
  EXPECT(convergedb_item_delete(db, NULL), N, "item_delete key NULL");
  EXPECT(convergedb_interaction_record(NULL, "u", "i1", 1, NULL, 1.0f), N,
         "interaction_record db NULL");
  EXPECT(convergedb_interaction_record(db, NULL, "i1", 1, NULL, 1.0f), N,
         "interaction_record user NULL");
  EXPECT(convergedb_interaction_record(db, "u", NULL, 1, NULL, 1.0f), N,
         "interaction_record item NULL");
  EXPECT(convergedb_interactions_record_jsonl(NULL, ""), N, "record_jsonl db NULL");
  EXPECT(convergedb_interactions_record_jsonl(db, NULL), N, "record_jsonl jsonl NULL");
  EXPECT(convergedb_history_json(NULL, "u1", &json), N, "history_json db NULL");
  EXPECT(convergedb_history_json(db, NULL, &json), N, "history_json user NULL");
  EXPECT(convergedb_history_json(db, "u1", NULL), N, "history_json out NULL");
  EXPECT(convergedb_recommend(NULL, "u1", 5, &rec), N, "recommend db NULL");
  EXPECT(convergedb_recommend(db, NULL, 5, &rec), N, "recommend user NULL");
  EXPECT(convergedb_recommend(db, "u1", 5, NULL), N, "recommend out NULL");
  CHECK(rec == (convergedb_recommendation *)0x1, "recommend left *out untouched");
  CHECK(json == (char *)0x1, "JSON functions left *out_json untouched");
  EXPECT(convergedb_tokenize(NULL, "v", 2, 4, 1), N, "tokenize db NULL");
  EXPECT(convergedb_tokenize(db, NULL, 2, 4, 1), N, "tokenize vector NULL");
  EXPECT(convergedb_sid(NULL, "i1", codes, 4, &len), N, "sid db NULL");
  EXPECT(convergedb_sid(db, NULL, codes, 4, &len), N, "sid item_key NULL");
  EXPECT(convergedb_sid(db, "i1", codes, 4, NULL), N, "sid out_len NULL");
  EXPECT(convergedb_allowed_next(NULL, NULL, 0, codes, 4, &len), N, "allowed_next db NULL");
  EXPECT(convergedb_allowed_next(db, NULL, 2, codes, 4, &len), N,
         "allowed_next prefix NULL with prefix_len 2");
  EXPECT(convergedb_allowed_next(db, NULL, 0, codes, 4, NULL), N, "allowed_next out_len NULL");
  CHECK(len == 77, "sid/allowed_next left *out_len untouched");
  EXPECT(convergedb_sid_import(NULL, "f"), N, "sid_import db NULL");
  EXPECT(convergedb_sid_import(db, NULL), N, "sid_import path NULL");
  EXPECT(convergedb_sid_export(NULL, "f"), N, "sid_export db NULL");
  EXPECT(convergedb_sid_export(db, NULL), N, "sid_export path NULL");
  CHECK(strstr(convergedb_last_error_message(), "path") != NULL, "the message names the argument");
}

static void invalid_utf8(convergedb_db *db) {
  const convergedb_status U = CONVERGEDB_INVALID_UTF8;
  convergedb_db *out_db = NULL;
  convergedb_recommendation *rec = NULL;
  char *json = NULL;
  uint16_t codes[4];
  size_t len = 0;
  EXPECT(convergedb_db_open(BAD, NULL, &out_db), U, "db_open path");
  EXPECT(convergedb_item_put(db, BAD, "", "", NULL, NULL), U, "item_put key");
  EXPECT(convergedb_item_put(db, "k", BAD, "", NULL, NULL), U, "item_put title");
  EXPECT(convergedb_item_put(db, "k", "", BAD, NULL, NULL), U, "item_put description");
  EXPECT(convergedb_item_put(db, "k", "", "", BAD, NULL), U, "item_put attributes_json");
  EXPECT(convergedb_item_put(db, "k", "", "", NULL, BAD), U, "item_put vectors_json");
  EXPECT(convergedb_items_put_jsonl(db, BAD), U, "items_put_jsonl");
  EXPECT(convergedb_item_get_json(db, BAD, &json), U, "item_get_json key");
  EXPECT(convergedb_item_delete(db, BAD), U, "item_delete key");
  EXPECT(convergedb_interaction_record(db, BAD, "i1", 1, NULL, 1.0f), U, "record user");
  EXPECT(convergedb_interaction_record(db, "u", BAD, 1, NULL, 1.0f), U, "record item");
  EXPECT(convergedb_interaction_record(db, "u", "i1", 1, BAD, 1.0f), U, "record kind");
  EXPECT(convergedb_interactions_record_jsonl(db, BAD), U, "record_jsonl");
  EXPECT(convergedb_history_json(db, BAD, &json), U, "history_json user");
  EXPECT(convergedb_recommend(db, BAD, 5, &rec), U, "recommend user");
  EXPECT(convergedb_tokenize(db, BAD, 2, 4, 1), U, "tokenize vector");
  EXPECT(convergedb_sid(db, BAD, codes, 4, &len), U, "sid item_key");
  EXPECT(convergedb_sid_import(db, BAD), U, "sid_import path");
  EXPECT(convergedb_sid_export(db, BAD), U, "sid_export path");
}

static void bad_input(convergedb_db *db) {
  convergedb_recommendation *rec = NULL;
  char *json = NULL;
  char long_key[600];
  memset(long_key, 'x', sizeof long_key - 1);
  long_key[sizeof long_key - 1] = '\0';

  EXPECT(convergedb_recommend(db, "u1", 0, &rec), CONVERGEDB_INVALID_K, "recommend k = 0");
  EXPECT(convergedb_recommend(db, "u1", SIZE_MAX, &rec), CONVERGEDB_INVALID_K,
         "recommend k = SIZE_MAX");
  EXPECT(convergedb_recommend(db, "u1", 10001, &rec), CONVERGEDB_INVALID_K,
         "recommend k = max_k + 1");
  CHECK(rec == NULL, "recommend wrote nothing on error");
  EXPECT(convergedb_recommend(db, "", 5, &rec), CONVERGEDB_EMPTY_KEY, "recommend empty user");
  EXPECT(convergedb_history_json(db, "nobody", &json), CONVERGEDB_UNKNOWN_USER,
         "history of an unknown user");
  CHECK(json == NULL, "history_json wrote nothing on error");
  EXPECT(convergedb_interaction_record(db, "u1", "nope", 1, NULL, 1.0f),
         CONVERGEDB_UNKNOWN_ITEM, "interaction with an unknown item");
  EXPECT(convergedb_interaction_record(db, "u1", "i1", 1, NULL, 0.0f / 0.0f),
         CONVERGEDB_INVALID_ARGUMENT, "NaN weight");
  EXPECT(convergedb_interaction_record(db, "", "i1", 1, NULL, 1.0f), CONVERGEDB_EMPTY_KEY,
         "empty user key");
  EXPECT(convergedb_item_get_json(db, "nope", &json), CONVERGEDB_UNKNOWN_ITEM,
         "get an unknown item");
  EXPECT(convergedb_item_delete(db, "nope"), CONVERGEDB_UNKNOWN_ITEM, "delete an unknown item");
  EXPECT(convergedb_item_put(db, "", "", "", NULL, NULL), CONVERGEDB_EMPTY_KEY, "empty item key");
  EXPECT(convergedb_item_put(db, long_key, "", "", NULL, NULL), CONVERGEDB_TOO_LONG,
         "599-byte item key");
  EXPECT(convergedb_item_put(db, "i9", "", "", NULL, "{\"v\": [1.0, 2.0]}"),
         CONVERGEDB_VECTOR_DIMENSION, "wrong vector dimension");
  EXPECT(convergedb_item_put(db, "i9", "", "", NULL, "{\"v\": []}"), CONVERGEDB_INVALID_VECTOR,
         "empty vector");
  EXPECT(convergedb_item_put(db, "i9", "", "", "{\"year\": ", NULL), CONVERGEDB_INVALID_ARGUMENT,
         "corrupt attributes JSON");
  EXPECT(convergedb_item_put(db, "i9", "", "", "{\"year\": 1995}", NULL),
         CONVERGEDB_INVALID_ARGUMENT, "attribute value not a string");
  EXPECT(convergedb_item_put(db, "i9", "", "", NULL, "[1, 2]"), CONVERGEDB_INVALID_ARGUMENT,
         "vectors JSON not an object");
  EXPECT(convergedb_items_put_jsonl(db, "{\"key\": \"a\"}\n{\"key\": "), CONVERGEDB_IMPORT,
         "corrupt items JSONL line 2");
  CHECK(strstr(convergedb_last_error_message(), ":2:") != NULL, "the message names line 2");
  EXPECT(convergedb_items_put_jsonl(db, "{\"key\": \"a\", \"colour\": \"red\"}"),
         CONVERGEDB_IMPORT, "unknown field in items JSONL");
  EXPECT(convergedb_items_put_jsonl(db, "{\"key\": \"a\"}\n{\"key\": \"a\"}"),
         CONVERGEDB_DUPLICATE_IN_BATCH, "duplicate key in a JSONL batch");
  EXPECT(convergedb_item_get_json(db, "a", &json), CONVERGEDB_UNKNOWN_ITEM,
         "a rejected batch wrote nothing");
  EXPECT(convergedb_interactions_record_jsonl(db, "not json"), CONVERGEDB_IMPORT,
         "corrupt interactions JSONL");
  EXPECT(convergedb_interactions_record_jsonl(
             db, "{\"user\": \"u2\", \"item\": \"i1\", \"timestamp\": 1}\n"
                 "{\"user\": \"u2\", \"item\": \"nope\", \"timestamp\": 2}"),
         CONVERGEDB_UNKNOWN_ITEM, "interaction batch with an unknown item");
  EXPECT(convergedb_history_json(db, "u2", &json), CONVERGEDB_UNKNOWN_USER,
         "the failed batch recorded nothing");
  EXPECT_OK(convergedb_item_put(db, "gone", "", "", NULL, NULL), "put an item to delete");
  EXPECT_OK(convergedb_item_delete(db, "gone"), "delete it");
  EXPECT(convergedb_item_delete(db, "gone"), CONVERGEDB_DELETED_ITEM, "delete it twice");
  EXPECT(convergedb_interaction_record(db, "u1", "gone", 1, NULL, 1.0f), CONVERGEDB_DELETED_ITEM,
         "interaction with a deleted item");
  CHECK(strlen(convergedb_last_error_message()) > 0, "an error leaves a message");
}

static void tokenization_errors(convergedb_db *db, const char *file) {
  uint16_t codes[8] = {0};
  uint16_t untouched[1] = {7};
  size_t len = 0;
  EXPECT(convergedb_sid_export(db, file), CONVERGEDB_INVALID_TOKENIZATION,
         "sid_export without a tokenization");
  EXPECT(convergedb_sid_import(db, "/nonexistent/sid.json"), CONVERGEDB_IO,
         "sid_import of a missing file");
  EXPECT(convergedb_tokenize(db, "v", 0, 4, 1), CONVERGEDB_INVALID_TOKENIZATION,
         "tokenize with 0 levels");
  EXPECT(convergedb_tokenize(db, "v", 2, 1, 1), CONVERGEDB_INVALID_TOKENIZATION,
         "tokenize with 1 code");
  EXPECT(convergedb_tokenize(db, "nope", 2, 4, 1), CONVERGEDB_INVALID_TOKENIZATION,
         "tokenize an unknown vector");
  EXPECT_OK(convergedb_tokenize(db, "v", 3, 2, 1), "tokenize 3x2");
  EXPECT(convergedb_sid(db, "nope", codes, 8, &len), CONVERGEDB_UNKNOWN_ITEM, "sid unknown item");
  len = 0;
  EXPECT(convergedb_sid(db, "i1", untouched, 1, &len), CONVERGEDB_BUFFER_TOO_SMALL,
         "sid with capacity 1");
  CHECK(len == 3 && untouched[0] == 7, "needed length 3 reported, buffer untouched");
  len = 0;
  EXPECT(convergedb_sid(db, "i1", NULL, 0, &len), CONVERGEDB_BUFFER_TOO_SMALL,
         "sid length query (NULL, 0)");
  CHECK(len == 3, "length query gives 3");
  len = 0;
  EXPECT(convergedb_allowed_next(db, NULL, 0, NULL, 0, &len), CONVERGEDB_BUFFER_TOO_SMALL,
         "allowed_next length query");
  CHECK(len >= 1 && len <= 2, "allowed_next needs 1 or 2 slots");
  EXPECT(convergedb_allowed_next(db, NULL, 0, NULL, len, &len), CONVERGEDB_NULL_ARGUMENT,
         "allowed_next out NULL with room claimed");
  EXPECT(convergedb_sid_import(db, "/etc/hostname"), CONVERGEDB_INVALID_TOKENIZATION,
         "sid_import of a file that is not a tokenization");
  EXPECT(convergedb_model_attach(db, "/nonexistent-bundle", NULL), CONVERGEDB_OTHER,
         "model_attach of a missing folder");
  CHECK(strstr(convergedb_last_error_message(), "nonexistent-bundle") != NULL,
        "the model error names the folder");
  EXPECT(convergedb_model_attach(db, NULL, NULL), CONVERGEDB_NULL_ARGUMENT, "model_attach dir NULL");
  EXPECT(convergedb_refresh_now(db, NULL), CONVERGEDB_NULL_ARGUMENT, "refresh_now user NULL");
  EXPECT(convergedb_refresh_now(db, "nobody"), CONVERGEDB_UNKNOWN_USER,
         "refresh_now of a user without history");
  EXPECT(convergedb_wait_idle(db, 10, NULL), CONVERGEDB_NULL_ARGUMENT, "wait_idle idle NULL");
  EXPECT_OK(convergedb_model_detach(db), "model_detach without a model");
}

static void options_and_lock(const char *db_path) {
  char path[256];
  convergedb_db *db = NULL;
  convergedb_options o = convergedb_options_default();
  o.durability = 7;
  EXPECT(convergedb_db_open(temp_path(path, sizeof path, "o1"), &o, &db),
         CONVERGEDB_INVALID_ARGUMENT, "durability 7");
  o = convergedb_options_default();
  o.flush_every_ms = 0;
  EXPECT(convergedb_db_open(temp_path(path, sizeof path, "o2"), &o, &db),
         CONVERGEDB_INVALID_ARGUMENT, "buffered with flush_every_ms 0");
  o = convergedb_options_default();
  o.refresh_workers = 1000;
  EXPECT(convergedb_db_open(temp_path(path, sizeof path, "o3"), &o, &db),
         CONVERGEDB_INVALID_ARGUMENT, "1000 refresh workers");
  o = convergedb_options_default();
  o.create_if_missing = false;
  EXPECT(convergedb_db_open(temp_path(path, sizeof path, "missing"), &o, &db),
         CONVERGEDB_NOT_A_DATABASE, "create_if_missing false on a missing directory");
  EXPECT(convergedb_db_open("/etc/hostname", NULL, &db), CONVERGEDB_NOT_A_DATABASE,
         "open a regular file");
  EXPECT(convergedb_db_open(db_path, NULL, &db), CONVERGEDB_IN_USE,
         "open a database already open");
  CHECK(db == NULL, "failed opens wrote no handle");
}

static void after_close(convergedb_db *db) {
  const convergedb_status C = CONVERGEDB_CLOSED;
  convergedb_recommendation *rec = NULL;
  char *json = NULL;
  uint16_t codes[4];
  size_t len = 0;
  EXPECT_OK(convergedb_db_close(db), "close");
  EXPECT(convergedb_db_close(db), C, "close twice");
  EXPECT(convergedb_db_flush(db), C, "flush after close");
  EXPECT(convergedb_stats_json(db, &json), C, "stats_json after close");
  EXPECT(convergedb_check_json(db, &json), C, "check_json after close");
  EXPECT(convergedb_item_put(db, "k", "", "", NULL, NULL), C, "item_put after close");
  EXPECT(convergedb_items_put_jsonl(db, "{\"key\": \"k\"}"), C, "items_put_jsonl after close");
  EXPECT(convergedb_item_get_json(db, "i1", &json), C, "item_get_json after close");
  EXPECT(convergedb_item_delete(db, "i1"), C, "item_delete after close");
  EXPECT(convergedb_interaction_record(db, "u", "i1", 1, NULL, 1.0f), C, "record after close");
  EXPECT(convergedb_interactions_record_jsonl(db, ""), C, "record_jsonl after close");
  EXPECT(convergedb_history_json(db, "u1", &json), C, "history_json after close");
  EXPECT(convergedb_recommend(db, "u1", 5, &rec), C, "recommend after close");
  EXPECT(convergedb_tokenize(db, "v", 2, 2, 1), C, "tokenize after close");
  EXPECT(convergedb_sid(db, "i1", codes, 4, &len), C, "sid after close");
  EXPECT(convergedb_allowed_next(db, NULL, 0, codes, 4, &len), C, "allowed_next after close");
  EXPECT(convergedb_sid_import(db, "f"), C, "sid_import after close");
  EXPECT(convergedb_sid_export(db, "f"), C, "sid_export after close");
  CHECK(json == NULL && rec == NULL, "nothing written after close");
  convergedb_db_free(db);
}

int main(void) {
  char path[256], file[256];
  make_temp_dir();
  temp_path(path, sizeof path, "db");
  temp_path(file, sizeof file, "sid.json");
  convergedb_db *db = open_db(path);
  EXPECT_OK(convergedb_items_put_jsonl(db, "{\"key\": \"i1\", \"vectors\": {\"v\": [1, 0, 0]}}\n"
                                           "{\"key\": \"i2\", \"vectors\": {\"v\": [0, 1, 0]}}\n"
                                           "{\"key\": \"i3\", \"vectors\": {\"v\": [0, 0, 1]}}"),
            "setup: 3 items");
  EXPECT_OK(convergedb_interaction_record(db, "u1", "i1", 1, NULL, 1.0f), "setup: 1 interaction");

  null_arguments(db);
  invalid_utf8(db);
  bad_input(db);
  tokenization_errors(db, file);
  options_and_lock(path);

  char *json = NULL;
  EXPECT_OK(convergedb_check_json(db, &json), "check after all the errors");
  CHECK(json && strstr(json, "\"clean\":true"), "the database is still clean");
  convergedb_string_free(json);
  after_close(db);

  CHECK(strcmp(convergedb_status_name(9999), "CONVERGEDB_UNKNOWN_STATUS") == 0,
        "status_name of an unknown value");
  convergedb_db_free(NULL);
  convergedb_recommendation_free(NULL);
  convergedb_string_free(NULL);
  CHECK(1, "free(NULL) functions are no-ops");
  CHECK(convergedb_recommendation_len(NULL) == 0 &&
            convergedb_recommendation_item_key(NULL, 0) == NULL &&
            convergedb_recommendation_item_score(NULL, 0) != convergedb_recommendation_item_score(NULL, 0) &&
            convergedb_recommendation_source(NULL) == NULL &&
            !convergedb_recommendation_stale(NULL) &&
            convergedb_recommendation_history_version(NULL) == 0,
        "accessors on a NULL result");
  return finish("test_errors");
}
