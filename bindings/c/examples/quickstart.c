/* convergedb from C: open a database in a temporary directory, put items from JSONL, record
 * interactions, recommend, print. Build (from the repository root, after `cargo build --lib`):
 *
 *   gcc -std=c11 -Ibindings/c/include bindings/c/examples/quickstart.c \
 *       -Ltarget/debug -lconvergedb -Wl,-rpath,$PWD/target/debug -o quickstart
 */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

#include "convergedb.h"

static int fail(const char *what, convergedb_status status) {
  fprintf(stderr, "%s failed: %s: %s\n", what, convergedb_status_name(status),
          convergedb_last_error_message());
  return 1;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

int main(void) {
  char dir[] = "/tmp/convergedb-quickstart-XXXXXX";
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  int rc = 0;
  convergedb_db *db = NULL;
  convergedb_options opts = convergedb_options_default();
  opts.durability = CONVERGEDB_DURABILITY_SYNC;
  convergedb_status s = convergedb_db_open(dir, &opts, &db);
  if (s != CONVERGEDB_OK) {
    return fail("open", s);
  }

  s = convergedb_items_put_jsonl(
      db,
      "{\"key\": \"m1\", \"title\": \"Toy Story\", \"attributes\": {\"year\": \"1995\"}}\n"
      "{\"key\": \"m2\", \"title\": \"Heat\"}\n"
      "{\"key\": \"m3\", \"title\": \"Fargo\"}\n");
  if (s != CONVERGEDB_OK) {
    rc = fail("items_put_jsonl", s);
    goto done;
  }
  s = convergedb_interactions_record_jsonl(
      db,
      "{\"user\": \"bob\", \"item\": \"m2\", \"timestamp\": 1700000000}\n"
      "{\"user\": \"carol\", \"item\": \"m2\", \"timestamp\": 1700000001}\n"
      "{\"user\": \"carol\", \"item\": \"m3\", \"timestamp\": 1700000002}\n");
  if (s == CONVERGEDB_OK) {
    s = convergedb_interaction_record(db, "alice", "m1", 1700000003, "view", 1.0f);
  }
  if (s != CONVERGEDB_OK) {
    rc = fail("record interactions", s);
    goto done;
  }

  convergedb_recommendation *rec = NULL;
  s = convergedb_recommend(db, "alice", 10, &rec);
  if (s != CONVERGEDB_OK) {
    rc = fail("recommend", s);
    goto done;
  }
  printf("recommendations for alice (source: %s):\n", convergedb_recommendation_source(rec));
  for (size_t i = 0; i < convergedb_recommendation_len(rec); i++) {
    printf("  %zu. %s (score %.0f)\n", i + 1, convergedb_recommendation_item_key(rec, i),
           convergedb_recommendation_item_score(rec, i));
  }
  convergedb_recommendation_free(rec);

  char *stats = NULL;
  s = convergedb_stats_json(db, &stats);
  if (s != CONVERGEDB_OK) {
    rc = fail("stats", s);
    goto done;
  }
  printf("stats: %s\n", stats);
  convergedb_string_free(stats);

done:
  s = convergedb_db_close(db);
  if (s != CONVERGEDB_OK && rc == 0) {
    rc = fail("close", s);
  }
  convergedb_db_free(db);
  nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return rc;
}
