/* 8 threads share one handle: each records interactions for its own user and recommends after
 * every write; then the counts add up and check() is clean. */
#include "check.h"

#include <pthread.h>

#define THREADS 8
#define EVENTS 40
#define ITEMS 50

static convergedb_db *db;

struct result {
  int failures;
  char message[256];
};

struct job {
  int id;
  struct result result;
};

static void *run(void *arg) {
  struct job *job = arg;
  char user[32], item[32];
  snprintf(user, sizeof user, "user-%d", job->id);
  for (int i = 0; i < EVENTS; i++) {
    snprintf(item, sizeof item, "item-%d", (job->id * 7 + i * 3) % ITEMS);
    convergedb_status s = convergedb_interaction_record(db, user, item, i, "view", 1.0f);
    if (s != CONVERGEDB_OK) {
      job->result.failures++;
      snprintf(job->result.message, sizeof job->result.message, "record: %s",
               convergedb_last_error_message());
      continue;
    }
    convergedb_recommendation *rec = NULL;
    s = convergedb_recommend(db, user, 10, &rec);
    if (s != CONVERGEDB_OK) {
      job->result.failures++;
      snprintf(job->result.message, sizeof job->result.message, "recommend: %s",
               convergedb_last_error_message());
      continue;
    }
    for (size_t k = 0; k < convergedb_recommendation_len(rec); k++) {
      if (convergedb_recommendation_item_key(rec, k) == NULL) {
        job->result.failures++;
      }
    }
    convergedb_recommendation_free(rec);
  }
  return NULL;
}

int main(void) {
  char path[256];
  make_temp_dir();
  EXPECT_OK(convergedb_db_open(temp_path(path, sizeof path, "db"), NULL, &db), "open");
  char line[128];
  for (int i = 0; i < ITEMS; i++) {
    char key[32];
    snprintf(key, sizeof key, "item-%d", i);
    snprintf(line, sizeof line, "title %d", i);
    if (convergedb_item_put(db, key, line, "", NULL, NULL) != CONVERGEDB_OK) {
      CHECK(0, "put an item");
    }
  }
  CHECK(1, "50 items put");

  pthread_t threads[THREADS];
  struct job jobs[THREADS];
  for (int t = 0; t < THREADS; t++) {
    jobs[t].id = t;
    jobs[t].result.failures = 0;
    jobs[t].result.message[0] = '\0';
    CHECK(pthread_create(&threads[t], NULL, run, &jobs[t]) == 0, "start a thread");
  }
  for (int t = 0; t < THREADS; t++) {
    pthread_join(threads[t], NULL);
    char what[400];
    snprintf(what, sizeof what, "thread %d: %d records + recommends without error %s", t,
             EVENTS, jobs[t].result.message);
    CHECK(jobs[t].result.failures == 0, what);
  }

  char *json = NULL;
  EXPECT_OK(convergedb_stats_json(db, &json), "stats");
  CHECK(json && strstr(json, "\"users\":8,") && strstr(json, "\"interactions\":320,"),
        "8 users and 320 interactions");
  convergedb_string_free(json);
  json = NULL;
  EXPECT_OK(convergedb_check_json(db, &json), "check");
  CHECK(json && strstr(json, "\"clean\":true"), "check is clean after the concurrent writes");
  convergedb_string_free(json);
  EXPECT_OK(convergedb_db_close(db), "close");
  convergedb_db_free(db);
  return finish("test_threads");
}
