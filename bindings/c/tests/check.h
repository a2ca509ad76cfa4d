/* Tiny test helpers shared by the C tests: one printed line per check, a failure count, and a
 * temporary directory removed at exit. */
#ifndef CONVERGEDB_TEST_CHECK_H
#define CONVERGEDB_TEST_CHECK_H

#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convergedb.h"

static int checks_failed = 0;
static int checks_run = 0;

/* Records one check: prints "ok - what" or "FAIL - what" with the file and line. */
#define CHECK(cond, what)                                                                      \
  do {                                                                                         \
    checks_run++;                                                                              \
    if (cond) {                                                                                \
      printf("ok - %s\n", what);                                                               \
    } else {                                                                                   \
      checks_failed++;                                                                         \
      printf("FAIL - %s (%s:%d; last error: %s)\n", what, __FILE__, __LINE__,                \
             convergedb_last_error_message());                                                 \
    }                                                                                          \
  } while (0)

/* Checks that `call` returns `expected`, printing both names on failure. */
#define EXPECT(call, expected, what)                                                           \
  do {                                                                                         \
    convergedb_status got_ = (call);                                                           \
    checks_run++;                                                                              \
    if (got_ == (expected)) {                                                                  \
      printf("ok - %s -> %s\n", what, convergedb_status_name(got_));                           \
    } else {                                                                                   \
      checks_failed++;                                                                         \
      printf("FAIL - %s: got %s, want %s (%s:%d; last error: %s)\n", what,                     \
             convergedb_status_name(got_), convergedb_status_name(expected), __FILE__,         \
             __LINE__, convergedb_last_error_message());                                       \
    }                                                                                          \
  } while (0)

#define EXPECT_OK(call, what) EXPECT(call, CONVERGEDB_OK, what)

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static char temp_dir[64];

static void remove_temp_dir(void) {
  if (temp_dir[0] != '\0') {
    nftw(temp_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  }
}

/* Makes a fresh directory under /tmp, removed at exit. Returns its path. */
static const char *make_temp_dir(void) {
  strcpy(temp_dir, "/tmp/convergedb-c-test-XXXXXX");
  if (mkdtemp(temp_dir) == NULL) {
    perror("mkdtemp");
    exit(2);
  }
  atexit(remove_temp_dir);
  return temp_dir;
}

/* Joins the temp dir and a name into `buf`. */
static const char *temp_path(char *buf, size_t cap, const char *name) {
  snprintf(buf, cap, "%s/%s", temp_dir, name);
  return buf;
}

/* Prints the summary line and returns the exit status. */
static int finish(const char *program) {
  printf("%s: %d checks, %d failed\n", program, checks_run, checks_failed);
  return checks_failed == 0 ? 0 : 1;
}

#endif
