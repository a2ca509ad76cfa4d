/* Times convergedb_recommend + convergedb_recommendation_free through the C API.
 *
 * Builds a synthetic database through the C API in a temporary directory (ITEMS items, USERS
 * users x PER_USER interactions, items drawn from a skewed xorshift64 sequence seeded 42), then
 * calls recommend(k = 10) for the users round-robin and prints the mean ns per call.
 *
 *   recommend_bench [items=2000] [users=1000] [per_user=50] [calls=200000]
 *
 * The workload is the one of the Rust counterpart described in bindings/README.md, so the two
 * figures compare the C call with the Rust call. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "convergedb.h"

static uint64_t rng = 42;
static uint64_t next_u64(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void die(const char *what, convergedb_status s) {
  fprintf(stderr, "%s: %s: %s\n", what, convergedb_status_name(s),
          convergedb_last_error_message());
  exit(1);
}

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
  size_t items = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000;
  size_t users = argc > 2 ? strtoul(argv[2], NULL, 10) : 1000;
  size_t per_user = argc > 3 ? strtoul(argv[3], NULL, 10) : 50;
  size_t calls = argc > 4 ? strtoul(argv[4], NULL, 10) : 200000;

  char dir[] = "/tmp/convergedb-bench-XXXXXX";
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  convergedb_db *db = NULL;
  convergedb_status s = convergedb_db_open(dir, NULL, &db);
  if (s != CONVERGEDB_OK) die("open", s);

  size_t cap = (items > users * per_user ? items : users * per_user) * 96 + 1;
  char *buf = malloc(cap);
  size_t n = 0;
  for (size_t i = 0; i < items; i++) {
    n += (size_t)snprintf(buf + n, cap - n, "{\"key\": \"i%zu\", \"title\": \"item %zu\"}\n", i, i);
  }
  s = convergedb_items_put_jsonl(db, buf);
  if (s != CONVERGEDB_OK) die("items", s);
  n = 0;
  for (size_t u = 0; u < users; u++) {
    for (size_t j = 0; j < per_user; j++) {
      uint64_t r = next_u64();
      uint64_t a = r % items, b = (r >> 32) % items;
      n += (size_t)snprintf(buf + n, cap - n,
                            "{\"user\": \"u%zu\", \"item\": \"i%llu\", \"timestamp\": %zu}\n", u,
                            (unsigned long long)(a < b ? a : b), j);
    }
  }
  s = convergedb_interactions_record_jsonl(db, buf);
  if (s != CONVERGEDB_OK) die("interactions", s);
  free(buf);

  char user[32];
  size_t total_len = 0;
  for (size_t i = 0; i < calls / 10 + 1; i++) { /* warm-up */
    convergedb_recommendation *rec = NULL;
    snprintf(user, sizeof user, "u%zu", i % users);
    if ((s = convergedb_recommend(db, user, 10, &rec)) != CONVERGEDB_OK) die("recommend", s);
    convergedb_recommendation_free(rec);
  }
  double start = now_ns();
  for (size_t i = 0; i < calls; i++) {
    convergedb_recommendation *rec = NULL;
    snprintf(user, sizeof user, "u%zu", i % users);
    if ((s = convergedb_recommend(db, user, 10, &rec)) != CONVERGEDB_OK) die("recommend", s);
    total_len += convergedb_recommendation_len(rec);
    convergedb_recommendation_free(rec);
  }
  double elapsed = now_ns() - start;
  printf("recommend_bench (C API): %zu items, %zu users x %zu interactions, k = 10: "
         "%.0f ns/call over %zu calls (mean list length %.1f)\n",
         items, users, per_user, elapsed / (double)calls, calls,
         (double)total_len / (double)calls);
  convergedb_db_close(db);
  convergedb_db_free(db);
  nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return 0;
}
