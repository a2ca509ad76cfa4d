/* The C API's edges (issue 17): an empty path, a page cache below 1 MiB, a NULL handle with bad
 * JSONL, the status codes of their own (LOST_WRITES, NO_MODEL, NO_ANN_INDEX, UNKNOWN_VECTOR),
 * accept_lost_writes, and convergedb_ann_build + convergedb_recommend_by_vector. */
#include "check.h"

#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static void copy_file(const char *from, const char *to) {
  FILE *in = fopen(from, "rb");
  FILE *out = fopen(to, "wb");
  if (in == NULL || out == NULL) {
    printf("FAIL - cannot copy %s to %s\n", from, to);
    exit(1);
  }
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
    fwrite(buf, 1, n, out);
  }
  fclose(in);
  fclose(out);
}

/* Copies the regular files of `from` (and of its subdirectories, one level) into `to`. */
static void copy_dir(const char *from, const char *to) {
  mkdir(to, 0755);
  DIR *d = opendir(from);
  if (d == NULL) {
    printf("FAIL - cannot read %s\n", from);
    exit(1);
  }
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
      continue;
    }
    char src[512], dst[512];
    snprintf(src, sizeof src, "%s/%s", from, e->d_name);
    snprintf(dst, sizeof dst, "%s/%s", to, e->d_name);
    struct stat st;
    if (stat(src, &st) == 0 && S_ISDIR(st.st_mode)) {
      copy_dir(src, dst);
    } else {
      copy_file(src, dst);
    }
  }
  closedir(d);
}

static int dir_is_empty(const char *path) {
  DIR *d = opendir(path);
  int empty = 1;
  struct dirent *e;
  while (d != NULL && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
      empty = 0;
    }
  }
  if (d != NULL) {
    closedir(d);
  }
  return empty;
}

static void open_options(void) {
  char path[256], cwd[512];
  convergedb_db *db = (convergedb_db *)0x1;
  temp_path(path, sizeof path, "cwd");
  mkdir(path, 0755);
  if (getcwd(cwd, sizeof cwd) == NULL || chdir(path) != 0) {
    printf("FAIL - chdir\n");
    exit(1);
  }
  EXPECT(convergedb_db_open("", NULL, &db), CONVERGEDB_INVALID_ARGUMENT, "db_open(\"\")");
  CHECK(dir_is_empty("."), "db_open(\"\") created nothing in the current directory");
  CHECK(db == (convergedb_db *)0x1, "db_open(\"\") left *out untouched");
  if (chdir(cwd) != 0) {
    printf("FAIL - chdir back\n");
    exit(1);
  }

  convergedb_options o = convergedb_options_default();
  CHECK(!o.accept_lost_writes, "accept_lost_writes is off by default");
  CHECK(o.cluster_urls == NULL && o.cluster_namespace == NULL,
        "the per-user tier is local by default");
  {
    convergedb_options c = convergedb_options_default();
    c.cluster_urls = "redis://127.0.0.1:1";
    EXPECT(convergedb_db_open(temp_path(path, sizeof path, "cl"), &c, &db), CONVERGEDB_CLUSTER,
           "an unreachable cluster");
    c.cluster_urls = "redis://127.0.0.1:1";
    c.cluster_namespace = "bad namespace";
    EXPECT(convergedb_db_open(temp_path(path, sizeof path, "cn"), &c, &db),
           CONVERGEDB_INVALID_ARGUMENT, "a bad cluster namespace");
  }
  o.cache_capacity_bytes = 0;
  EXPECT(convergedb_db_open(temp_path(path, sizeof path, "c0"), &o, &db),
         CONVERGEDB_INVALID_ARGUMENT, "cache_capacity_bytes 0");
  CHECK(strstr(convergedb_last_error_message(), "cache_capacity_bytes") != NULL,
        "the message names cache_capacity_bytes");
  o.cache_capacity_bytes = 1024 * 1024 - 1;
  EXPECT(convergedb_db_open(temp_path(path, sizeof path, "c1"), &o, &db),
         CONVERGEDB_INVALID_ARGUMENT, "cache_capacity_bytes 1 MiB - 1");
  o.cache_capacity_bytes = 1024 * 1024;
  db = NULL;
  EXPECT_OK(convergedb_db_open(temp_path(path, sizeof path, "c2"), &o, &db),
            "cache_capacity_bytes 1 MiB");
  convergedb_db_free(db);
}

static void null_handle_jsonl(void) {
  EXPECT(convergedb_items_put_jsonl(NULL, "not json"), CONVERGEDB_NULL_ARGUMENT,
         "items_put_jsonl(NULL handle, bad JSONL)");
  EXPECT(convergedb_interactions_record_jsonl(NULL, "not json"), CONVERGEDB_NULL_ARGUMENT,
         "interactions_record_jsonl(NULL handle, bad JSONL)");
  EXPECT(convergedb_items_put_jsonl(NULL, "\xff\xfe"), CONVERGEDB_NULL_ARGUMENT,
         "items_put_jsonl(NULL handle, bad UTF-8)");
}

static void status_names(void) {
  CHECK(strcmp(convergedb_status_name(28), "CONVERGEDB_LOST_WRITES") == 0 &&
            CONVERGEDB_LOST_WRITES == 28,
        "LOST_WRITES is 28");
  CHECK(strcmp(convergedb_status_name(29), "CONVERGEDB_NO_MODEL") == 0, "NO_MODEL is 29");
  CHECK(strcmp(convergedb_status_name(30), "CONVERGEDB_FOREIGN_TOKENIZATION") == 0,
        "FOREIGN_TOKENIZATION is 30");
  CHECK(strcmp(convergedb_status_name(31), "CONVERGEDB_CONFLICT") == 0, "CONFLICT is 31");
  CHECK(strcmp(convergedb_status_name(32), "CONVERGEDB_NO_ANN_INDEX") == 0,
        "NO_ANN_INDEX is 32");
  CHECK(strcmp(convergedb_status_name(33), "CONVERGEDB_UNKNOWN_VECTOR") == 0,
        "UNKNOWN_VECTOR is 33");
}

static void by_vector(void) {
  char path[256];
  convergedb_db *db = NULL;
  EXPECT_OK(convergedb_db_open(temp_path(path, sizeof path, "ann"), NULL, &db), "open");
  EXPECT_OK(convergedb_items_put_jsonl(db, "{\"key\": \"i1\", \"vectors\": {\"v\": [1, 0, 0]}}\n"
                                           "{\"key\": \"i2\", \"vectors\": {\"v\": [0.9, 0.1, 0]}}\n"
                                           "{\"key\": \"i3\", \"vectors\": {\"v\": [0, 0, 1]}}"),
            "3 items with vectors");
  const float q[3] = {1.0f, 0.0f, 0.0f};
  convergedb_recommendation *rec = (convergedb_recommendation *)0x1;
  EXPECT(convergedb_recommend_by_vector(db, "v", q, 3, 2, &rec), CONVERGEDB_NO_ANN_INDEX,
         "recommend_by_vector before an index is built");
  CHECK(strstr(convergedb_last_error_message(), "build") != NULL, "the message says build one");
  EXPECT(convergedb_ann_build(db, "nope"), CONVERGEDB_UNKNOWN_VECTOR, "ann_build of no vector");
  EXPECT(convergedb_ann_build(NULL, "v"), CONVERGEDB_NULL_ARGUMENT, "ann_build NULL handle");
  EXPECT(convergedb_ann_build(db, NULL), CONVERGEDB_NULL_ARGUMENT, "ann_build NULL vector");
  EXPECT_OK(convergedb_ann_build(db, "v"), "ann_build v");
  EXPECT(convergedb_recommend_by_vector(db, "v", q, 2, 2, &rec), CONVERGEDB_INVALID_ARGUMENT,
         "query of dimension 2");
  EXPECT(convergedb_recommend_by_vector(db, "v", NULL, 3, 2, &rec), CONVERGEDB_NULL_ARGUMENT,
         "query NULL");
  EXPECT(convergedb_recommend_by_vector(db, "v", q, 3, 0, &rec), CONVERGEDB_INVALID_K, "k 0");
  EXPECT(convergedb_recommend_by_vector(db, NULL, q, 3, 2, &rec), CONVERGEDB_NULL_ARGUMENT,
         "vector NULL");
  EXPECT(convergedb_recommend_by_vector(db, "v", q, 3, 2, NULL), CONVERGEDB_NULL_ARGUMENT,
         "out NULL");
  CHECK(rec == (convergedb_recommendation *)0x1, "errors left *out untouched");
  const float nan_q[3] = {0.0f / 0.0f, 0.0f, 0.0f};
  EXPECT(convergedb_recommend_by_vector(db, "v", nan_q, 3, 2, &rec), CONVERGEDB_INVALID_ARGUMENT,
         "query holding NaN");
  rec = NULL;
  EXPECT_OK(convergedb_recommend_by_vector(db, "v", q, 3, 2, &rec), "recommend_by_vector");
  CHECK(convergedb_recommendation_len(rec) == 2, "2 items");
  CHECK(strcmp(convergedb_recommendation_item_key(rec, 0), "i1") == 0, "i1 first");
  CHECK(strcmp(convergedb_recommendation_item_key(rec, 1), "i2") == 0, "i2 second");
  CHECK(convergedb_recommendation_item_score(rec, 0) >= convergedb_recommendation_item_score(rec, 1),
        "best first");
  CHECK(strcmp(convergedb_recommendation_source(rec), "ann") == 0, "source ann");
  CHECK(!convergedb_recommendation_stale(rec), "not stale");
  convergedb_recommendation_free(rec);
  EXPECT_OK(convergedb_item_delete(db, "i1"), "delete i1");
  rec = NULL;
  EXPECT_OK(convergedb_recommend_by_vector(db, "v", q, 3, 2, &rec), "recommend_by_vector again");
  CHECK(strcmp(convergedb_recommendation_item_key(rec, 0), "i2") == 0, "the deleted i1 is gone");
  convergedb_recommendation_free(rec);
  EXPECT(convergedb_refresh_now(db, "nobody"), CONVERGEDB_UNKNOWN_USER, "refresh_now no history");
  EXPECT_OK(convergedb_interaction_record(db, "u1", "i2", 1, NULL, 1.0f), "record");
  EXPECT(convergedb_refresh_now(db, "u1"), CONVERGEDB_NO_MODEL, "refresh_now without a model");
  EXPECT_OK(convergedb_db_close(db), "close");
  convergedb_db_free(db);
}

static void lost_writes(void) {
  char a[256], b[256], from[512], to[512];
  convergedb_db *db = NULL;
  convergedb_options o = convergedb_options_default();
  o.durability = CONVERGEDB_DURABILITY_SYNC;
  temp_path(a, sizeof a, "lw-a");
  temp_path(b, sizeof b, "lw-b");
  EXPECT_OK(convergedb_db_open(a, &o, &db), "open a");
  EXPECT_OK(convergedb_item_put(db, "early", "", "", NULL, NULL), "put early");
  EXPECT_OK(convergedb_db_close(db), "close a");
  convergedb_db_free(db);
  copy_dir(a, b);
  db = NULL;
  EXPECT_OK(convergedb_db_open(a, &o, &db), "reopen a");
  EXPECT_OK(convergedb_item_put(db, "late1", "", "", NULL, NULL), "put late1");
  EXPECT_OK(convergedb_item_put(db, "late2", "", "", NULL, NULL), "put late2");
  EXPECT_OK(convergedb_db_close(db), "close a again");
  convergedb_db_free(db);
  /* b: the storage files from before the late writes, the acknowledgement record from after. */
  snprintf(from, sizeof from, "%s/convergedb.ack", a);
  snprintf(to, sizeof to, "%s/convergedb.ack", b);
  copy_file(from, to);
  db = (convergedb_db *)0x1;
  EXPECT(convergedb_db_open(b, NULL, &db), CONVERGEDB_LOST_WRITES,
         "open with acknowledged writes missing");
  CHECK(strstr(convergedb_last_error_message(), "accept_lost_writes") != NULL,
        "the message says how to accept the loss");
  CHECK(db == (convergedb_db *)0x1, "no handle written");
  o = convergedb_options_default();
  o.accept_lost_writes = true;
  db = NULL;
  EXPECT_OK(convergedb_db_open(b, &o, &db), "open with accept_lost_writes");
  char *json = NULL;
  EXPECT_OK(convergedb_item_get_json(db, "early", &json), "the early item is there");
  convergedb_string_free(json);
  EXPECT(convergedb_item_get_json(db, "late1", &json), CONVERGEDB_UNKNOWN_ITEM,
         "the lost item is not");
  EXPECT_OK(convergedb_db_close(db), "close b");
  convergedb_db_free(db);
  db = NULL;
  EXPECT_OK(convergedb_db_open(b, NULL, &db), "a plain open after accepting");
  convergedb_db_free(db);
}

int main(void) {
  make_temp_dir();
  open_options();
  null_handle_jsonl();
  status_names();
  by_vector();
  lost_writes();
  return finish("test_edges");
}
