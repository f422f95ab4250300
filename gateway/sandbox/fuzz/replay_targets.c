/*
 * The sandbox pattern fuzzer's part of the replay (validators/fuzz/
 * replay.c): its corpus and crashers, and the target on every input.
 */

#include <stddef.h>
#include <stdint.h>


int sandbox_pattern_fuzz_input(const uint8_t *data, size_t size);
void replay_input(const uint8_t *data, size_t size);


char  *replay_dirs[] = {
    "gateway/sandbox/fuzz/corpus", "gateway/sandbox/fuzz/crashers", NULL
};


void
replay_input(const uint8_t *data, size_t size)
{
    sandbox_pattern_fuzz_input(data, size);
}
